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


@pytest.fixture(scope="session")
def short_mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One epoch on 5,000 examples in all three frameworks, shared by several tests."""
    out = tmp_path_factory.mktemp("short") / "run"
    proc = run_compare("--task", "mnist", "--epochs", "1", "--train-limit", "5000", "--out", str(out))
    return out, proc
