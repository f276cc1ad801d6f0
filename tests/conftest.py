"""Shared fixtures: the repository root, a compare.py runner, and one short MNIST run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
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


def run_compare(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """compare.py in a subprocess, as a user runs it (stdout/stderr captured as text)."""
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
