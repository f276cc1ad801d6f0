"""The plane fit: the exact optimum, the |r| convention at 0, and three-way parity."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common.data import PLANE_POINTS
from common.metrics import plane_loss, plane_optimum
from tests.conftest import load_results, runs_by_framework, shared_run

FRAMEWORK_PARAMS = [pytest.param(f, marks=getattr(pytest.mark, f)) for f in ("pytorch", "tensorflow", "jax")]


def test_optimum_matches_the_known_values() -> None:
    best = plane_optimum(PLANE_POINTS)
    assert best["a"] == pytest.approx(4.95444, abs=1e-5)
    assert best["b"] == pytest.approx(2.71860, abs=1e-5)
    assert best["loss"] == pytest.approx(0.487096, abs=1e-6)


def test_optimum_is_a_minimum() -> None:
    """Every nearby (a, b) is worse: the vertex found by enumeration is the L1 optimum."""
    best = plane_optimum(PLANE_POINTS)
    rng = np.random.default_rng(0)
    for da, db in rng.uniform(-0.05, 0.05, size=(200, 2)):
        assert plane_loss(best["a"] + da, best["b"] + db, PLANE_POINTS) >= best["loss"] - 1e-12


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_abs_derivative_at_zero_is_zero(framework: str) -> None:
    """The project's convention: d|r|/dr at r = 0 is 0 in every framework's plane fit."""
    plane = importlib.import_module(f"frameworks.{framework}.plane")
    assert plane.abs_grad_at_zero() == 0.0


@pytest.mark.jax
def test_jax_abs_alone_would_give_one() -> None:
    """Why frameworks/jax/plane.py defines its own |r|: jax.grad(jnp.abs)(0.0) is 1.0."""
    import jax
    import jax.numpy as jnp

    assert float(jax.grad(jnp.abs)(0.0)) == 1.0


@pytest.fixture(scope="session")
def plane_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The three plane fits, one thread each (--threads 1: a setting that must not move a number)."""
    return shared_run(tmp_path_factory, "plane", ("--task", "plane", "--threads", "1"))


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_three_plane_fits_agree_and_reach_the_optimum(plane_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = plane_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = load_results(out)
    runs = runs_by_framework(doc)
    assert set(runs) == {"pytorch", "tensorflow", "jax"}
    assert all(r["status"] == "ok" for r in runs.values())
    trajectories = {f: np.array(r["trajectory"]) for f, r in runs.items()}
    for f, t in trajectories.items():
        assert t.shape == (5000, 2), f
        if f != "pytorch":
            assert np.abs(t - trajectories["pytorch"]).max() <= 1e-12, f  # measured 1.1e-16
        assert runs[f]["final_loss"] <= 1.01 * doc["optimum"]["loss"], f
        assert len(runs[f]["losses"]) == 5000
    assert doc["optimum"]["loss"] == pytest.approx(0.487096, abs=1e-6)
    assert doc["parity"]["passed"] is True
    assert {c["name"] for c in doc["parity"]["checks"]} >= {"a, b at every iteration (float64): max abs difference"}
    assert "pytorch" in proc.stdout and "AGREE" in proc.stdout


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_threads_reach_all_three_frameworks(plane_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    """PyTorch set_num_threads, TensorFlow's two pools, JAX through the worker's CPU affinity."""
    threads = {f: r["threads"] for f, r in runs_by_framework(load_results(plane_run[0])).items()}
    assert threads == {"pytorch": 1, "tensorflow": 1, "jax": 1}
