"""Start one worker process per framework and collect its run entry.

Separate processes keep the frameworks from competing for GPU memory and thread pools in
one address space, and let one framework crash, hang or run out of memory while the
others' results survive.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from common import environment, settings
from common.config import BY_NAME, RunConfig
from common.io import atomic_write_json
from common.results import not_run
from common.run import cluster
from common.table import setup_line, summary_line
from common.verdict import handback

ROOT = Path(__file__).resolve().parents[2]
# How to install a framework's modules (common.config.REGISTRY): its pyproject extra has its name.
INSTALL = 'pip install -c constraints.txt -e ".[{name}]"'
# CUDA libraries that one framework loads and the others must not: the CUDA set puts PyTorch's CUDA 13 cuDNN, NCCL and
# NVSHMEM in <venv>/framework-libs/pytorch, apart from the CUDA 12 ones TensorFlow and JAX load from site-packages,
# which hold one of each (README, "GPU builds"). torch loads them from the first folder on its sys.path that has them.
OWN_LIBRARIES = Path(sys.prefix) / "framework-libs"
GROUP_TAG = "TRIPTYCH_GROUP"  # marks every process of one framework's run (Group.stop)
POLL_SECONDS = 0.05
STOP_SECONDS = 5.0
# TensorFlow's and XLA's C++ INFO/WARNING lines (absl format; torchrun's agent logs in it too, with
# a file's whole path) and absl's pre-init notice: kept in logs/<framework>.log, not shown.
# TF_CPP_MIN_LOG_LEVEL does not reach messages logged before absl is initialised, nor grappler's
# "Not handling type DT_DOUBLE" in float64 runs.
NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
    rb"|\[Gloo\] Rank \d+ is connected to \d+ peer ranks\. .*"  # gloo's notice in every JAX process (stdout)
    rb"|USDT:[\d-]+ [\d:]+ \d+:\d+ \w+\.cpp:\d+\] profiler_(start|stop)"  # torch.profiler, --profile
    # The float64 stages build their own model, so Keras's forward is traced for it too (and per seed in
    # common.verdict.sweep): expected retracing, which tf.function warns about after five.
    rb"|WARNING:tensorflow:\d+ out of the last \d+ calls to <function \w+ at 0x[0-9a-f]+> triggered tf\.function"
    rb" retracing\..*)$"
)
# The first sign that a process is failing: a Python traceback, an ERROR/FATAL line in absl format
# (torchrun's agent, TensorFlow's collectives and coordination service, XLA under jax.distributed), or
# the last words of a process about to abort: the C++ runtime's (std::terminate: "terminate called
# without an active exception", "... after throwing an instance of 'gloo::IoException'") or Python's.
# From there on that process's output is the failure's detail: the log keeps it, the terminal gets
# the project's one line naming the log (run_one).
FAILING = re.compile(
    rb"^(Traceback \(most recent call last\):|[EF]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
    rb"|terminate called .*|Fatal Python error: .*)$"
)


def missing_modules(framework: str) -> list[str]:
    """Modules of `framework` that are not installed (found without importing them)."""
    return [m for m in BY_NAME[framework].modules if importlib.util.find_spec(m) is None]


def install_hint(framework: str) -> str:
    return INSTALL.format(name=framework)


def worker_env(cfg: RunConfig, framework: str | None = None) -> dict[str, str]:
    """Environment of a worker: device visibility, strict numerics, quiet logs, the framework's settings."""
    env = dict(os.environ)
    own = OWN_LIBRARIES / framework if framework else None
    own_path = str(own) if own and own.is_dir() else None  # before site-packages: these, not the shared ones
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), own_path, env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices drown the output
    environment.share_gpu_memory(env)  # JAX and TensorFlow would take most of the GPU's memory up front
    if cfg.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    if cfg.profile == "strict":
        env["NVIDIA_TF32_OVERRIDE"] = "0"  # no TF32 in any library's cuBLAS/cuDNN calls
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # required by torch deterministic algorithms
        env["TF_DETERMINISTIC_OPS"] = "1"
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), "--xla_gpu_deterministic_ops=true"]))
    if cfg.threads:
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    if framework is not None:
        apply_settings(env, framework, cfg.settings)
    return env


def apply_settings(env: dict[str, str], framework: str, name: str) -> None:
    """The framework's "defaults" or "fastest" settings (common.settings), read once at its start-up."""
    for key, value in settings.env_changes(framework, name).items():
        if value is None:
            env.pop(key, None)
        elif key == "XLA_FLAGS":  # shared with the user and the GPU profile: append, never replace
            env[key] = " ".join(filter(None, [env.get(key), value]))
        else:
            env[key] = value


def run_one(framework: str, cfg: RunConfig, job: Path, name: str | None = None) -> dict[str, Any]:
    """Run one framework's worker (or its data-parallel group); a crash, hang or kill becomes a `failed` entry.

    `name` (default: the framework) names its result and log files when one run starts several.
    A failure whose details the terminal was spared (Group.relay) names the log that holds them.
    """
    name = name or framework
    result = cfg.out_dir / "runs" / f"{name}.json"
    for stale in (result, *rank_records(result)):
        stale.unlink(missing_ok=True)
    log = log_file(cfg, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    worker = ["frameworks.worker", framework, str(job), str(result)]
    gpus = cluster.visible_gpus() if cfg.parallel.enabled and cfg.device != "cpu" else None
    group = Group(cluster.members(framework, cfg, worker, gpus), worker_env(cfg, framework), log)
    try:
        group.wait(cfg.timeout)
    except subprocess.TimeoutExpired:
        return not_run(framework, "failed", f"timed out after {cfg.timeout:g} s (raise --timeout)")
    finally:
        group.stop()
    if not result.is_file():  # what the launcher and the ranks printed about it is in the log
        return not_run(framework, "failed", see_log(group.failure(cluster.ranked(framework, cfg), result), log))
    entry = json.loads(result.read_text())
    if entry["status"] != "ok" and group.withheld:  # the worker's traceback went to the log, not the terminal
        entry["error"] = see_log(entry["error"], log)
    return entry


def log_file(cfg: RunConfig, name: str) -> Path:
    """Where everything the processes of one run print is kept (`name`: run_one's)."""
    return cfg.out_dir / "logs" / f"{name}.log"


def see_log(message: str, log: Path) -> str:
    """A one-line message that points to the log holding what the processes printed about it."""
    return f"{message} (see {log})"


class Group:
    """The processes that run one framework, started together and stopped together.

    One process on one device; a data-parallel run may have several (common.run.cluster). When
    one fails, every other is stopped at once: a replica waiting in an all-reduce for a dead
    peer would otherwise wait until --timeout.
    """

    def __init__(self, members: list[cluster.Member], env: dict[str, str], log: Path) -> None:
        self.members = members
        # Every process of the group, and every process those start (torchrun's ranks run in
        # sessions of their own), inherits this tag: stop() finds them all, even orphaned.
        self.tag = f"{GROUP_TAG}={os.getpid()}-{id(self)}-{time.monotonic_ns()}"
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop, after the relays end)
        self.procs: list[subprocess.Popen] = []
        self.tails: list[deque[bytes]] = []
        self.relays: list[threading.Thread] = []
        self.failed: list[int] = []  # members that exited non-zero before any was stopped, in member order
        self.lock = threading.Lock()
        self.stopping = False  # from stop() on, nothing more is shown: launchers report the signal at length
        self.withheld = False  # a process's failure (FAILING and what followed) went to the log only
        try:
            for member in members:
                self.start(member, env)
        except BaseException:  # a process that cannot start: the ones already started must not outlive us
            self.stop()
            raise

    def start(self, member: cluster.Member, env: dict[str, str]) -> None:
        name, value = self.tag.split("=")
        read, write = os.pipe()
        try:
            proc = subprocess.Popen(
                member.cmd,
                cwd=ROOT,
                env={**env, **member.env, name: value},
                stdin=subprocess.DEVNULL,
                # A rank's stdout goes through the filter (gloo greets on it), but rank 0's progress bar to a terminal.
                stdout=write if member.rank or (member.rank == 0 and not sys.stdout.isatty()) else None,
                stderr=write,
                start_new_session=True,
            )
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        tail: deque[bytes] = deque(maxlen=400)
        stream = os.fdopen(read, "rb")
        relay = threading.Thread(target=self.relay, args=(stream, tail), daemon=True)
        relay.start()
        self.procs.append(proc)
        self.tails.append(tail)
        self.relays.append(relay)

    def relay(self, stream: IO[bytes], tail: deque[bytes]) -> None:
        """Copy one process's output to the log, and to our stderr what the user should see while it runs.

        Not shown: framework log noise; a process's output from its first sign of failure on; and
        everything once the group is being stopped.
        """
        failing = False
        for line in stream:
            tail.append(line)
            bare = line.rstrip(b"\r\n")
            failing = failing or bool(FAILING.match(bare))
            with self.lock:
                if self.log.closed:  # the group was stopped and its log closed: nothing left to keep
                    return
                self.log.write(line)
                self.log.flush()
                self.withheld = self.withheld or failing
                if not (failing or self.stopping or NOISE.match(bare)):
                    sys.stderr.buffer.write(line)
                    sys.stderr.flush()

    def wait(self, timeout: float) -> None:
        """Until every process exits 0 or one fails; subprocess.TimeoutExpired after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            codes = [proc.poll() for proc in self.procs]
            self.failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if self.failed or all(code == 0 for code in codes):
                return
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.members[0].cmd, timeout)
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """SIGTERM every process of the group, then SIGKILL whatever lingers; close the log."""
        with self.lock:
            self.stopping = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in self.procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
            for pid in tagged(self.tag):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + STOP_SECONDS
            while time.monotonic() < deadline and (any(p.poll() is None for p in self.procs) or tagged(self.tag)):
                time.sleep(POLL_SECONDS)
            if all(p.poll() is not None for p in self.procs) and not tagged(self.tag):
                break
        for relay in self.relays:
            relay.join(timeout=5)
        with self.lock:
            self.log.close()

    def failure(self, ranked: bool, result: Path) -> str:
        """Why no result came back; with several ranks, the one that failed first (the others were stopped)."""
        deaths = self.deaths()
        if deaths:
            rank, number = deaths[0]
            name = signal.Signals(number).name
            hint = " (out of memory?)" if name == "SIGKILL" else ""
            if rank is None:
                return f"worker killed by {name}{hint}"
            return f"rank {rank} killed by {name}{hint}; the other ranks were stopped"
        # A rank that raised recorded why; its peers fail after it (a closed connection), so the earliest.
        records = sorted((json.loads(p.read_text()) for p in rank_records(result)), key=lambda r: r["failed_at"])
        if records:
            first = records[0]
            return f"rank {first['rank']}: {first['error']}" if ranked else first["error"]
        failed = self.failed[0] if self.failed else 0
        rank, code = self.members[failed].rank, self.procs[failed].returncode
        who = f"rank {rank}" if ranked and rank is not None else "worker"
        return f"{who} exited with code {code} before writing a result"

    def deaths(self) -> list[tuple[int | None, int]]:
        """(rank, signal) of each process killed from outside (a crash, the OOM killer), first seen first.

        A signal death is a cause, never a consequence: a rank whose peer died fails with an
        error. SIGTERM is what launchers send to the survivors, so it is left out of torchrun's report.
        """
        found = [(self.members[i].rank, -self.procs[i].returncode) for i in self.failed if self.procs[i].returncode < 0]
        for tail in self.tails:
            text = b"".join(tail).decode(errors="replace")
            reported = cluster.torchrun_failures(text)  # exit codes; a signal's is its negative number
            found += [(rank, -code) for rank, code in reported if code < 0 and -code != signal.SIGTERM]
        return found


def rank_records(result: Path) -> list[Path]:
    """Where the ranks of a data-parallel run that failed say why (frameworks/worker.py)."""
    return sorted(result.parent.glob(f"{result.stem}.rank*.json"))


def tagged(tag: str) -> list[int]:
    """Live processes whose environment carries `tag` (Linux /proc; elsewhere process groups suffice)."""
    needle = b"\0" + tag.encode() + b"\0"
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in b"\0" + environ.read_bytes():
                pids.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return [pid for pid in pids if pid != os.getpid()]


def run_all(cfg: RunConfig) -> list[dict[str, Any]]:
    """Each framework in turn (never in parallel: timings would compete for the cores)."""
    job = cfg.out_dir / "job.json"
    atomic_write_json(job, cfg.to_dict())
    runs: list[dict[str, Any]] = []
    for framework in cfg.frameworks:
        skipped = not_installed(framework)
        if skipped:
            runs.append(skipped)
            continue
        try:
            runs.append(handback.checked(cfg, run_one(framework, cfg, job)))  # what the verdict can read, or why not
            if not cfg.quiet:
                print(summary_line(runs[-1]), file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            raise Interrupted([*runs, *stopped(cfg, cfg.frameworks[len(runs) :])]) from None
    return runs


def check_all(cfg: RunConfig) -> list[dict[str, Any]]:
    """compare.py --check-setup: each framework's worker in turn, stopped once it has said what it sees and uses.

    One line each on stdout as it comes (common.table.setup_line); the same worker as a run's, so a framework
    is checked exactly as it would run: its own process, the run's environment and device settings.
    """
    job = cfg.out_dir / "job.json"
    atomic_write_json(job, cfg.to_dict())
    runs: list[dict[str, Any]] = []
    for framework in cfg.frameworks:
        runs.append(not_installed(framework) or run_one(framework, cfg, job))
        print(setup_line(runs[-1]), flush=True)
    return runs


def not_installed(framework: str) -> dict[str, Any] | None:
    """A framework whose modules are missing is skipped, with the command that installs it."""
    missing = missing_modules(framework)
    if not missing:
        return None
    return not_run(framework, "skipped", f"{', '.join(missing)} not installed; install with: {install_hint(framework)}")


def stopped(cfg: RunConfig, frameworks: tuple[str, ...]) -> list[dict[str, Any]]:
    """Ctrl-C: the frameworks not finished; the one that was running names its log (what it printed as it stopped)."""
    entries = []
    for framework in frameworks:
        log = log_file(cfg, framework)
        message = see_log("stopped by Ctrl-C", log) if log.is_file() and not entries else "stopped by Ctrl-C"
        entries.append(not_run(framework, "interrupted", message))
    return entries


class Interrupted(Exception):
    """Ctrl-C during a run; carries the entries of what finished and what did not."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        super().__init__("interrupted")
        self.runs = runs
