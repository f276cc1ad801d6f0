"""Strict-profile parity on a GPU (runs where PyTorch or JAX sees one; CI has none).

Passed on an NVIDIA H200 (torch 2.11, jax 0.11.2) in 61 s; see docs/performance.md for first-step gradients
3.5e-7 apart once PyTorch's strict profile stopped using cuDNN, and identical reruns.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import load_results, run_compare, runs_by_framework


def gpu_frameworks() -> list[str]:
    found = []
    if importlib.util.find_spec("torch"):
        import torch

        if torch.cuda.is_available():
            found.append("pytorch")
    if importlib.util.find_spec("jax"):
        import jax

        if any(d.platform == "gpu" for d in jax.devices()):
            found.append("jax")
    return found


@pytest.mark.gpu
@pytest.mark.slow
def test_strict_gpu_parity_and_determinism(tmp_path: Path) -> None:
    frameworks = gpu_frameworks()
    if len(frameworks) < 2:
        pytest.skip(f"needs two frameworks that see a GPU; found {frameworks or 'none'}")
    args = ("--device", "gpu", "--frameworks", ",".join(frameworks), "--train-limit", "2000", "--epochs", "1")
    docs = []
    for name in ("first", "second"):
        proc = run_compare(*args, "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        docs.append(runs_by_framework(load_results(tmp_path / name)))
    for framework in frameworks:
        assert docs[0][framework]["device"] != "cpu"
        assert docs[0][framework]["step_losses"] == docs[1][framework]["step_losses"], framework
