"""Shared fixtures: the repository root, a compare.py runner, one short MNIST run, and the GPUs a test process sees
(the frameworks' GPU memory settings; `--gpus N`, a stand-in nvidia-smi that lists N GPUs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from common import environment

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_MODULES = ("torch", "tensorflow", "jax")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpus",
        type=int,
        metavar="N",
        help="run as on a machine whose nvidia-smi lists N NVIDIA GPUs (0: installed, no driver): a stand-in first on"
        " PATH for the session and every process it starts; the frameworks' builds still decide what they see",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module imports a framework: the GPU settings every test process needs, then the rest."""
    gpu_settings(config.getoption("gpus"))
    speed_settings()


def pytest_report_header(config: pytest.Config) -> str | None:
    gpus = config.getoption("gpus")
    return None if gpus is None else f"simulated GPUs: nvidia-smi lists {gpus} (--gpus {gpus})"


def gpu_settings(gpus: int | None) -> None:
    """The frameworks' GPU memory as their workers take it (environment.GPU_MEMORY): pytest-xdist starts a worker per
    core, and tests import JAX and TensorFlow in-process, where one would otherwise take the GPU's memory from the
    rest. Read when a framework initialises, so a framework imported before this point is refused.

    With --gpus N, the machine shows N GPUs: nvidia-smi is a stand-in (common.environment and the Makefile ask it).
    """
    early = [name for name in FRAMEWORK_MODULES if name in sys.modules]
    if early:
        raise pytest.UsageError(
            f"{', '.join(early)} was imported before tests/conftest.py set the GPU memory settings"
            f" ({', '.join(environment.GPU_MEMORY)}): load no plugin that imports a framework"
        )
    environment.share_gpu_memory(os.environ)
    if gpus is not None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # visible_gpus would read it before nvidia-smi
        os.environ["PATH"] = stand_in_nvidia_smi(ROOT / ".pytest_cache" / f"nvidia-smi-{gpus}", gpus)


def speed_settings() -> None:
    """The suite runs one test per core, each starting framework processes: a busy machine by construction,
    where PyTorch's OpenMP threads spin while they wait for work and take the cores from the rest
    (docs/performance.md, "Options measured"). Sleeping instead changes no number and made four end-to-end
    tests 25% faster (94 against 131 s on the 2-core AMD EPYC).

    JAX compiles the same programs in each of those processes (the float64 stages, the step, predict): its
    persistent compilation cache, whose keys hold the program, the jax version and XLA_FLAGS, compiles each
    once (the same four tests: 76 against 95 s, from an empty cache). Every process the tests start inherits
    both; a value already set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".pytest_cache" / "jax-compilation"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # ours compile in under a second


# --- The GPUs a test process sees: a stand-in nvidia-smi (no GPU needed) ---


def nvidia_smi(gpus: int) -> str:
    """A stand-in nvidia-smi listing `gpus` H200s as the real one words them (-L, and the query
    common.environment.gpu_info makes); with 0, one installed where no driver answers."""
    if gpus == 0:
        failed = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
        return f'#!/bin/sh\necho "{failed}" >&2\nexit 9\n'
    listed = " ".join(f'"GPU {i}: NVIDIA H200 (UUID: GPU-3f1e2d4c-0000-1111-2222-33334444555{i})"' for i in range(gpus))
    queried = " ".join(['"NVIDIA H200, 580.159.04, 143771 MiB"'] * gpus)
    return f"#!/bin/sh\ncase \"$1\" in\n  -L) printf '%s\\n' {listed} ;;\n  *) printf '%s\\n' {queried} ;;\nesac\n"


def path_without_nvidia_smi() -> str:
    """This PATH less the folders that hold a nvidia-smi, real or stand-in, so that only a new stand-in answers."""
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "nvidia-smi").exists())


def stand_in_nvidia_smi(folder: Path, gpus: int) -> str:
    """Write the stand-in for `gpus` GPUs into `folder`; return the PATH on which it alone answers."""
    smi, text = folder / "nvidia-smi", nvidia_smi(gpus)
    if not (smi.is_file() and smi.read_text() == text):  # pytest-xdist's workers find the controller's in place
        folder.mkdir(parents=True, exist_ok=True)
        smi.write_text(text)
        smi.chmod(0o755)
    return os.pathsep.join([str(folder), path_without_nvidia_smi()])


@pytest.fixture
def simulated_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """simulated_gpus(N): from here on in this test, nvidia-smi lists N GPUs (None: there is no nvidia-smi)."""

    def simulate(gpus: int | None) -> None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        if gpus is None:
            monkeypatch.setenv("PATH", path_without_nvidia_smi())
        else:
            monkeypatch.setenv("PATH", stand_in_nvidia_smi(tmp_path / f"nvidia-smi-{gpus}", gpus))

    return simulate


def device_left_to_chance(args: Sequence[str]) -> str:
    """Why a compare.py command line leaves its devices to the machine, or '' where it does not.

    `--devices N` (N > 1) without `--device` runs on N GPUs where the machine shows them, is refused where it shows
    fewer, and is simulated on the CPU where it shows none: a test must say which it means (tests/test_devices.py).
    """
    words = [part for arg in args for part in str(arg).split("=", 1)]
    if "--devices" not in words[:-1] or "--device" in words:
        return ""
    counts = words[words.index("--devices") + 1].split(",")
    if max((int(c) for c in counts if c.strip().isdigit()), default=1) < 2:
        return ""
    return f"compare.py {' '.join(map(str, args))}: --devices without --device leaves the device to the machine"


def checked(args: Sequence[str]) -> None:
    """Fail the test whose compare.py command line leaves its devices to chance."""
    reason = device_left_to_chance(args)
    if reason:
        pytest.fail(f"{reason}; pass --device cpu (simulated devices) or --device gpu (and skip where too few)")


def run_compare(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """compare.py in a subprocess, as a user runs it (stdout/stderr captured as text)."""
    checked(args)
    return subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), "--quiet", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_compare(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """compare.py started in a process group of its own, as a terminal's foreground job, for Ctrl-C tests.

    A shell's background job (`make test &`) starts with SIGINT ignored, and an ignored signal stays
    ignored across exec; a handled one is reset to the default. So handle it while compare.py starts,
    and Ctrl-C (SIGINT to its process group: interrupt()) reaches it as it does from a terminal.
    """
    checked(args)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "compare.py"), "--quiet", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C: SIGINT to compare.py's process group; its stdout and stderr once it has exited."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        return proc.communicate(timeout=180)  # generous: a loaded CI machine renders the report slowly
    finally:
        proc.kill()  # a failed wait must not leave compare.py running its remaining frameworks


def assert_columns_line_up(table: str) -> None:
    """Every row's cells start where the header's names do (a failed row's last cell runs on)."""
    header, rule, *rows = table.splitlines()
    assert rows and rule.replace("-", "").strip() == ""
    starts = [i for i in range(len(rule)) if rule[i] == "-" and (i == 0 or rule[i - 1] == " ")]
    assert starts == [i for i in range(len(header)) if header[i] != " " and (i == 0 or header[i - 2 : i] == "  ")]
    for row in rows:
        cells = [i for i in range(len(row)) if row[i] != " " and (i == 0 or row[i - 2 : i] == "  ")]
        assert cells == starts[: len(cells)], row


def load_results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def runs_by_framework(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["framework"]: r for r in doc["runs"]}


def shared_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, args: tuple[str, ...]
) -> tuple[Path, subprocess.CompletedProcess]:
    """One compare.py run for the whole test session, whichever pytest-xdist worker asks first.

    pytest-xdist's recipe for a session fixture made once: the workers' temporary directories
    share a parent, and a file lock lets one make the run while the others wait for it.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # without xdist: this session's own
    out, record = root / name / "run", root / name / "process.json"
    with FileLock(str(root / f"{name}.lock")):
        if not record.is_file():
            out.parent.mkdir()
            proc = run_compare(*args, "--out", str(out))
            record.write_text(json.dumps([proc.returncode, proc.stdout, proc.stderr]))
    returncode, stdout, stderr = json.loads(record.read_text())
    return out, subprocess.CompletedProcess(args, returncode, stdout, stderr)


SHORT_MNIST = ("--task", "mnist", "--epochs", "1", "--train-limit", "5000")


@pytest.fixture(scope="session")
def short_mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch on 5,000 examples in all three frameworks (SHORT_MNIST), shared by several tests."""
    return shared_run(tmp_path_factory, "short-mnist", SHORT_MNIST)
