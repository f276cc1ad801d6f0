"""Shared fixtures: the repository root, a compare.py runner, and one short MNIST run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


def load_results(out: Path) -> dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def runs_by_framework(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["framework"]: r for r in doc["runs"]}


SHORT_MNIST = ("--task", "mnist", "--epochs", "1", "--train-limit", "5000")
# The tests that read short_mnist keep to one pytest-xdist worker (make test: --dist loadgroup),
# so that the run is made once, not once per worker.
ON_SHORT_MNIST = pytest.mark.xdist_group("short_mnist")


@pytest.fixture(scope="session")
def short_mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch on 5,000 examples in all three frameworks (SHORT_MNIST), shared by several tests."""
    out = tmp_path_factory.mktemp("short") / "run"
    proc = run_compare(*SHORT_MNIST, "--out", str(out))
    return out, proc
