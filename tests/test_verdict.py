"""The verdict and the exit code say what was compared; nothing is called agreement by default."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compare
from common.config import MnistConfig, RunConfig
from common.results import not_run
from common.run import launch
from common.verdict import parity
from common.weights import CANONICAL_SHAPES
from tests.conftest import load_results, run_compare, runs_by_framework

PASS = parity.check("some check", 0.0, 1.0)
FAIL = parity.check("some check", 2.0, 1.0)


def ok(framework: str, **numbers: Any) -> dict[str, Any]:
    return {"framework": framework, "status": "ok", "device": "cpu", **numbers}


def doc_of(runs: list[dict[str, Any]], checks: list[dict[str, Any]], benchmark: bool = False) -> dict[str, Any]:
    return {"config": {"benchmark": benchmark}, "runs": runs, "parity": parity.verdict(checks, runs)}


@pytest.mark.parametrize(
    ("runs", "checks", "headline", "code"),
    [
        ([ok("pytorch")], [], "NOT COMPARED: only pytorch was requested", 0),
        ([ok("pytorch")], [FAIL], "NOT COMPARED: only pytorch was requested", 1),
        (
            [ok("pytorch"), not_run("tensorflow", "failed", "x"), not_run("jax", "skipped", "y")],
            [],
            "NOT COMPARED: only pytorch finished",
            1,
        ),
        (
            [not_run("pytorch", "failed", "x"), not_run("jax", "failed", "y")],
            [],
            "NOT COMPARED: no framework finished",
            1,
        ),
        ([ok("pytorch"), ok("jax")], [], "NOT COMPARED: no parity checks ran", 1),
        ([ok("pytorch"), ok("jax")], [PASS, FAIL], "DISAGREE", 1),
        ([ok("pytorch"), ok("tensorflow"), ok("jax")], [PASS, PASS], "AGREE", 0),
        (
            [ok("pytorch"), not_run("tensorflow", "failed", "x"), ok("jax")],
            [PASS],
            "AGREE (pytorch and jax only; tensorflow failed)",
            1,
        ),
    ],
    ids=[
        "one-requested",
        "one-requested-check-failed",
        "one-of-three",
        "none",
        "no-checks",
        "a-check-failed",
        "all",
        "two-of-three",
    ],
)
def test_headline_and_exit_code(runs: list, checks: list, headline: str, code: int) -> None:
    doc = doc_of(runs, checks)
    assert parity.headline(doc["parity"]) == headline
    assert doc["parity"]["passed"] is headline.startswith("AGREE")
    assert compare.exit_code(doc) == code


def test_a_benchmark_needs_no_checks_to_succeed() -> None:
    runs = [ok("pytorch"), ok("jax")]
    assert compare.exit_code(doc_of(runs, [], benchmark=True)) == 0
    assert compare.exit_code(doc_of([*runs, not_run("tensorflow", "failed", "x")], [], benchmark=True)) == 1


def test_results_written_before_the_status_was_recorded_are_read_honestly() -> None:
    """An old results.json said passed=True with no checks when nothing was compared."""
    assert parity.status_of({"passed": True, "checks": []}) == parity.NOT_COMPARED
    assert parity.status_of({"passed": True, "checks": [PASS]}) == parity.AGREE
    assert parity.status_of({"passed": False, "checks": [FAIL]}) == parity.DISAGREE


def write_probes(out: Path, framework: str, scale: float) -> None:
    """Probe files as a worker writes them, differing from the reference by `scale`."""
    rng = np.random.default_rng(0)
    arrays = {"logits": rng.normal(size=(100, 10)) * (1 + scale), "loss": np.float64(2.3)}
    for key, shape in CANONICAL_SHAPES.items():
        arrays[f"grad/{key}"] = rng.normal(size=shape) * (1 + scale)
    (out / "probes").mkdir(exist_ok=True)
    np.savez(out / "probes" / f"{framework}.npz", **arrays)


@pytest.mark.parametrize(("device", "loose"), [("cpu", False), ("gpu:0 (NVIDIA H200)", True)])
def test_fast_loosens_tolerances_only_on_a_gpu(tmp_path: Path, device: str, loose: bool) -> None:
    write_probes(tmp_path, "pytorch", 0.0)
    write_probes(tmp_path, "jax", 1e-3)  # logits 1e-3 apart: inside FAST, outside STRICT32
    runs = [ok(f, device=device, test_accuracy=0.98, test_loss=0.05) for f in ("pytorch", "jax")]
    cfg = RunConfig(task="mnist", fast=True, out=str(tmp_path), mnist=MnistConfig())
    verdict = parity.mnist_parity(cfg, runs)
    logits = next(c for c in verdict["checks"] if c["name"].startswith("initial logits"))
    expected = parity.FAST if loose else parity.STRICT32
    assert logits["tolerance"] == expected["logits"]
    assert verdict["status"] == (parity.AGREE if loose else parity.DISAGREE)
    if not loose:
        assert "--fast changes nothing on a CPU: strict tolerances" in verdict["note"]


def test_device_cpu_hides_every_gpu_from_the_workers() -> None:
    env = launch.worker_env(RunConfig(task="plane", device="cpu"))
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["JAX_PLATFORMS"] == "cpu"


@pytest.mark.jax
def test_one_framework_is_not_called_agreement(tmp_path: Path) -> None:
    proc = run_compare("--task", "plane", "--frameworks", "jax", "--out", str(tmp_path / "one"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("NOT COMPARED: only jax was requested; results.json")
    assert "AGREE" not in proc.stdout
    text = (tmp_path / "one" / "report.md").read_text()
    assert "### Parity: not compared" in text and "Parity: passed" not in text


@pytest.mark.jax
def test_overwrite_replaces_an_earlier_run(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    proc = run_compare("--task", "plane", "--frameworks", "jax", "--out", str(tmp_path), "--overwrite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert runs_by_framework(load_results(tmp_path))["jax"]["status"] == "ok"


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_device_gpu_where_a_framework_sees_none_is_one_line(tmp_path: Path, capfd) -> None:
    """Past compare's own check (a GPU the frameworks cannot use): each worker fails in one line."""
    cfg = RunConfig(task="plane", device="gpu", out=str(tmp_path), quiet=True)
    runs = {r["framework"]: r for r in launch.run_all(cfg)}
    if any(r["status"] == "ok" for r in runs.values()):
        pytest.skip("a framework sees a GPU here")
    torch_version = importlib.metadata.version("torch")
    assert (
        runs["pytorch"]["error"]
        == f"--device gpu: PyTorch sees no GPU: {torch_version} is a CPU-only build (see README, GPU)"
    )
    assert runs["tensorflow"]["error"] == (
        "--device gpu: TensorFlow sees no GPU: tensorflow-cpu is a CPU-only build (see README, GPU)"
    )
    assert (
        runs["jax"]["error"]
        == "--device gpu: JAX sees no GPU: no CUDA plugin, jaxlib alone is CPU-only (see README, GPU)"
    )
    assert "Traceback" not in capfd.readouterr().err
