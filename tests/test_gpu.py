"""On NVIDIA GPUs: strict parity and determinism on one, the engines on two, each skipped where there are fewer, saying
why; and `make gpu-check`, whose answers on a machine without a usable GPU are checked here on any machine.

Which frameworks run on a GPU is asked of compare.py --check-setup (each framework in its worker, as a run starts it),
never of a framework imported here. Passed on an NVIDIA H200 (torch 2.11, jax 0.11.2) in 61 s; see docs/performance.md
for first-step gradients 3.5e-7 apart once PyTorch's strict profile stopped using cuDNN, and identical reruns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common import environment
from common.run import cluster, gpucheck
from tests.conftest import load_results, run_compare, runs_by_framework, shared_run


@pytest.fixture(scope="session")
def on_gpu(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], str]:
    """The frameworks that run on a GPU here, and --check-setup's lines that say why the others do not."""
    if not environment.gpu_visible():
        pytest.skip("no NVIDIA GPU: nvidia-smi lists none and there is no /dev/nvidia*")
    out, proc = shared_run(tmp_path_factory, "check-setup", ("--check-setup",))
    found = gpucheck.on_gpu(out)
    return [name for name, yes in found.items() if yes], proc.stdout.strip()


@pytest.mark.gpu
@pytest.mark.slow
def test_strict_gpu_parity_and_determinism(tmp_path: Path, on_gpu: tuple[list[str], str]) -> None:
    frameworks, lines = on_gpu
    if len(frameworks) < 2:
        pytest.skip(f"needs two frameworks that run on a GPU; {len(frameworks)} do here:\n{lines}")
    args = ("--device", "gpu", "--frameworks", ",".join(frameworks), "--train-limit", "2000", "--epochs", "1")
    docs = []
    for name in ("first", "second"):
        proc = run_compare(*args, "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        docs.append(runs_by_framework(load_results(tmp_path / name)))
    for framework in frameworks:
        assert docs[0][framework]["device"] != "cpu"
        assert docs[0][framework]["step_losses"] == docs[1][framework]["step_losses"], framework


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.distributed
def test_each_engine_on_two_gpus_computes_the_single_device_steps(tmp_path: Path, on_gpu: tuple[list[str], str]):
    """DDP with NCCL, MirroredStrategy and jax.sharding over two GPUs, each checked against one device."""
    gpus = cluster.visible_gpus()
    if len(gpus) < 2:
        pytest.skip(f"needs 2 GPUs; this machine shows {len(gpus)} (nvidia-smi, CUDA_VISIBLE_DEVICES)")
    frameworks, lines = on_gpu
    if not frameworks:
        pytest.skip(f"needs a framework that runs on a GPU; none does here:\n{lines}")
    args = ("--devices", "2", "--device", "gpu", "--train-limit", "600", "--epochs", "1", "--batch-size", "60")
    proc = run_compare(*args, "--frameworks", ",".join(frameworks), "--out", str(tmp_path / "run"), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = load_results(tmp_path / "run")
    for framework, run in runs_by_framework(doc).items():
        assert run["devices"] == 2 and run["device"] != "cpu", framework
        own = [c for c in doc["parity"]["checks"] if c["name"].startswith(f"{framework}: 2 devices vs one")]
        assert len(own) == 3 and all(c["passed"] for c in own), own


# --- make gpu-check where there is no GPU to check (any machine) ---


@pytest.mark.parametrize(("gpus", "why"), [(None, "nvidia-smi not found"), (0, "nvidia-smi lists no GPU")])
def test_gpu_check_without_a_gpu_says_so_in_one_line(simulated_gpus, capsys, gpus: int | None, why: str) -> None:
    simulated_gpus(gpus)
    assert gpucheck.main([]) == 1
    assert capsys.readouterr().out == (
        f"gpu-check: no NVIDIA GPU here ({why}): nothing to check on a GPU; the CPU's checks are make test\n"
    )


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_gpu_check_where_no_framework_runs_on_the_gpu_says_why_and_trains_nothing(
    simulated_gpus, capsys, tmp_path: Path
) -> None:
    """nvidia-smi lists an H200 (a stand-in), and no framework can use it: each line says why, nothing is trained."""
    if environment.gpu_visible():
        pytest.skip("nvidia-smi lists a GPU here: make gpu-check would train on it (the tests above)")
    simulated_gpus(1)
    assert gpucheck.main(["--out", str(tmp_path / "check")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "GPU: NVIDIA H200, 143771 MiB, driver 580.159.04"
    assert [line.split(":")[0].strip() for line in lines[1:4]] == ["pytorch", "tensorflow", "jax"]
    assert all("runs on cpu" in line and "; no GPU: " in line for line in lines[1:4]), lines
    assert lines[4:] == [
        "gpu-check: 0 frameworks on the GPU, nothing to compare (pytorch, tensorflow, jax: see the lines above)"
    ]
    assert sorted(p.name for p in (tmp_path / "check").iterdir()) == ["setup"]  # no run was started


def test_gpu_check_prints_a_run_in_a_few_lines(short_mnist) -> None:
    """The runs' table (strict) or the checks with their tolerances (--fast), then the verdict."""
    out, _ = short_mnist
    doc = json.loads((out / "results.json").read_text())
    table = gpucheck.run_lines(doc, checks=False)
    assert table[0].startswith("framework ") and len(table) == 2 + 3 + 1 and table[-1] == "AGREE"
    checks = gpucheck.run_lines(doc, checks=True)
    assert "tolerance" in checks[0] and len(checks) == 2 + len(doc["parity"]["checks"]) + 1
