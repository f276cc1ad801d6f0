"""Start one worker process per framework and collect its run entry.

Separate processes keep the frameworks from competing for GPU memory and thread pools in
one address space, and let one framework crash, hang or run out of memory while the
others' results survive.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from common import settings
from common.config import RunConfig
from common.io import atomic_write_json
from common.results import not_run
from common.table import summary_line

ROOT = Path(__file__).resolve().parent.parent
# The modules a framework's package needs, and how to install them.
REQUIRES = {"pytorch": ("torch",), "tensorflow": ("tensorflow",), "jax": ("jax", "flax", "optax")}
INSTALL = 'pip install -c constraints.txt -e ".[{name}]"'
# TensorFlow's and XLA's C++ INFO/WARNING lines (absl format) and absl's pre-init notice: kept
# in logs/<framework>.log, not shown. TF_CPP_MIN_LOG_LEVEL does not reach messages logged
# before absl is initialised, nor grappler's "Not handling type DT_DOUBLE" in float64 runs.
NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"
    rb"|USDT:[\d-]+ [\d:]+ \d+:\d+ \w+\.cpp:\d+\] profiler_(start|stop))$"  # torch.profiler, --profile
)


def missing_modules(framework: str) -> list[str]:
    """Modules of `framework` that are not installed (found without importing them)."""
    return [m for m in REQUIRES[framework] if importlib.util.find_spec(m) is None]


def install_hint(framework: str) -> str:
    return INSTALL.format(name=framework)


def worker_env(cfg: RunConfig, framework: str | None = None) -> dict[str, str]:
    """Environment of a worker: device visibility, strict numerics, quiet logs, the framework's settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices drown the output
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX would take 75% of GPU memory up front
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
    """Run one framework's worker; a crash, hang or kill becomes a `failed` entry.

    `name` (default: the framework) names its result and log files when one run starts several.
    """
    name = name or framework
    result = cfg.out_dir / "runs" / f"{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "frameworks.worker", framework, str(job), str(result)]
    log = cfg.out_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = worker_env(cfg, framework)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    relay = threading.Thread(target=relay_stderr, args=(proc.stderr, log), daemon=True)
    relay.start()
    try:
        code = proc.wait(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return not_run(framework, "failed", f"timed out after {cfg.timeout:g} s (raise --timeout)")
    except KeyboardInterrupt:
        stop(proc)
        raise
    finally:
        relay.join(timeout=5)
    if result.is_file():
        return json.loads(result.read_text())
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return not_run(framework, "failed", f"worker killed by {name}{hint}")
    return not_run(framework, "failed", f"worker exited with code {code} before writing a result (see {log})")


def relay_stderr(stream: IO[bytes], log: Path) -> None:
    """Copy a worker's stderr to its log file, and all but framework log noise to ours."""
    with open(log, "wb") as f:
        for line in stream:
            f.write(line)
            if not NOISE.match(line.rstrip(b"\r\n")):
                sys.stderr.buffer.write(line)
                sys.stderr.flush()


def stop(proc: subprocess.Popen) -> None:
    """Terminate the worker's whole process group, then kill it if it lingers."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_all(cfg: RunConfig) -> list[dict[str, Any]]:
    """Each framework in turn (never in parallel: timings would compete for the cores)."""
    job = cfg.out_dir / "job.json"
    atomic_write_json(job, cfg.to_dict())
    runs: list[dict[str, Any]] = []
    for i, framework in enumerate(cfg.frameworks):
        missing = missing_modules(framework)
        if missing:
            error = f"{', '.join(missing)} not installed; install with: {install_hint(framework)}"
            runs.append(not_run(framework, "skipped", error))
            continue
        try:
            runs.append(run_one(framework, cfg, job))
            if not cfg.quiet:
                print(summary_line(runs[-1]), file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            runs += [not_run(f, "interrupted", "stopped by Ctrl-C") for f in cfg.frameworks[i:]]
            raise Interrupted(runs) from None
    return runs


class Interrupted(Exception):
    """Ctrl-C during a run; carries the entries of what finished and what did not."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        super().__init__("interrupted")
        self.runs = runs
