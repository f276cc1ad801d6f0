"""What each framework sees and uses: `compare.py --check-setup`, a run's first lines and results.json, and the
verdict of a run whose frameworks trained on different devices (hand-built results: no GPU needed)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import compare
from common import environment, results, table
from common.config import RunConfig
from common.verdict import parity
from tests.conftest import ROOT, load_results, path_without_nvidia_smi, run_compare, runs_by_framework
from tests.test_install import H200

# The convolutions' kernel libraries each framework may report on a CPU (frameworks/*/runtime.py kernels).
CPU_KERNELS = {
    "pytorch": r"oneDNN|ATen \(im2col \+ BLAS\)|NNPACK",
    "tensorflow": r"oneDNN|Eigen",
    "jax": r"XLA:CPU, [\w+ ]+",
}


def cpu_builds() -> bool:
    """Whether the CPU builds are the ones installed (a CUDA build answers differently on a GPU machine)."""
    try:
        importlib.metadata.version("tensorflow-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return "+cpu" in importlib.metadata.version("torch") and not any(
        importlib.util.find_spec(p) for p in ("jax_cuda12_plugin", "jax_cuda13_plugin")
    )


def versions() -> dict[str, tuple[str, str]]:
    """Each framework's version and build, as its runtime's versions() words them for the CPU builds."""
    v = importlib.metadata.version
    return {
        "pytorch": (v("torch"), "CPU"),
        "tensorflow": (v("tensorflow-cpu"), f"CPU, Keras {v('keras')}"),
        "jax": (v("jax"), f"CPU, jaxlib {v('jaxlib')}, Flax {v('flax')}, Optax {v('optax')}"),
    }


def check_line(framework: str, tail: str = "") -> str:
    """The pattern of one --check-setup line on a CPU."""
    version, build = versions()[framework]
    vectors = environment.widest_vectors()
    return (
        rf"{framework:>10}: {re.escape(version)} \({re.escape(build)}\); sees cpu; runs on cpu; kernels"
        rf" ({CPU_KERNELS[framework]})" + (rf" \(CPU with {vectors}\)" if vectors else "") + re.escape(tail)
    )


def check_setup(tmp_path: Path, path: str | None = None) -> subprocess.CompletedProcess:
    """compare.py --check-setup with its temporary files in tmp_path (and PATH, where given)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), "--check-setup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(environment.gpu_visible(), reason="a machine with a GPU prints what its frameworks make of it")
@pytest.mark.skipif(not cpu_builds(), reason="the lines' builds are the CPU builds'")
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_check_setup_prints_one_line_per_framework(tmp_path: Path) -> None:
    proc = check_setup(tmp_path)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    for framework, line in zip(("pytorch", "tensorflow", "jax"), lines, strict=True):
        assert re.fullmatch(check_line(framework), line), line
    assert list(tmp_path.iterdir()) == []  # the workers' files went with the check


@pytest.mark.skipif(not cpu_builds(), reason="the reasons are the CPU builds'")
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_on_a_machine_with_a_gpu_the_cpu_builds_say_why_and_the_fix(tmp_path: Path) -> None:
    """nvidia-smi lists an H200 (a stand-in on PATH): each CPU build says why it sees no GPU, and the fix."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvidia-smi").write_text(H200)
    (tmp_path / "bin" / "nvidia-smi").chmod(0o755)
    proc = check_setup(tmp_path, os.pathsep.join([str(tmp_path / "bin"), path_without_nvidia_smi()]))
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    why = {
        "pytorch": f"{importlib.metadata.version('torch')} is a CPU-only build",
        "tensorflow": "tensorflow-cpu is a CPU-only build",
        "jax": "no CUDA plugin, jaxlib alone is CPU-only",
    }
    for framework, line in zip(why, proc.stdout.splitlines(), strict=True):
        assert re.fullmatch(check_line(framework, f"; no GPU: {why[framework]}; fix: make run GPU=1"), line), line


def test_check_setup_trains_nothing_so_refuses_training_options() -> None:
    proc = run_compare("--check-setup", "--seeds", "0-2")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2,
        "",
        "error: --check-setup trains nothing; leave out --seeds\n",
    )


@pytest.mark.jax
def test_a_run_starts_with_the_short_line_and_records_it(tmp_path: Path) -> None:
    """Without --quiet, each framework's first line is its setup in short; results.json keeps the whole of it."""
    plane = ("--task", "plane", "--frameworks", "jax", "--device", "cpu", "--out", str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), *plane],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = load_results(tmp_path)
    run = runs_by_framework(doc)["jax"]
    assert proc.stderr.splitlines()[0] == table.setup_line(run, short=True)
    assert re.fullmatch(r"       jax: \S+ on cpu, XLA:CPU, .+", proc.stderr.splitlines()[0])
    assert run["setup"]["devices"] == ["cpu"] and run["setup"]["kernels"].startswith("XLA:CPU, ")
    assert doc["environment"]["frameworks"]["jax"]["setup"] == run["setup"]
    assert "\n- jax sees: cpu\n" in (tmp_path / "report.md").read_text()
    results.validate(doc)


# --- The lines themselves, from hand-built entries (what a GPU machine reports) ---

H200_RUN = {
    "framework": "pytorch",
    "status": "ok",
    "version": "2.13.0",
    "build": "CUDA 13.0, cuDNN 92000",
    "device": "cuda:0 (NVIDIA H200)",
    "setup": {"devices": ["cuda:0 (NVIDIA H200)", "cpu"], "kernels": "ATen CUDA (cuDNN off: strict profile)"},
}


def test_setup_lines_of_a_gpu_run_and_of_a_failed_one() -> None:
    assert table.setup_line(H200_RUN) == (
        "   pytorch: 2.13.0 (CUDA 13.0, cuDNN 92000); sees cuda:0 (NVIDIA H200), cpu; runs on cuda:0 (NVIDIA H200);"
        " kernels ATen CUDA (cuDNN off: strict profile)"
    )
    assert table.setup_line(H200_RUN, short=True) == (
        "   pytorch: 2.13.0 on cuda:0 (NVIDIA H200), ATen CUDA (cuDNN off: strict profile)"
    )
    failed = {"framework": "jax", "status": "failed", "error": "--device gpu: JAX sees no GPU: ..."}
    assert table.setup_line(failed) == "       jax: failed, --device gpu: JAX sees no GPU: ..."


# --- Frameworks on different devices: not compared, in one line ---


def trained(framework: str, device: str, **numbers: Any) -> dict[str, Any]:
    return {
        "framework": framework,
        "status": "ok",
        "device": device,
        "test_accuracy": 0.989,
        "test_loss": 0.03,
        **numbers,
    }


MIXED = (
    "NOT COMPARED: pytorch ran on cuda:0 (NVIDIA H200), tensorflow and jax on the CPU; no tolerance between a GPU's"
    " and a CPU's training has been measured: run them on one device (--device cpu, or the CUDA builds: make run GPU=1)"
)


def test_a_run_on_a_gpu_and_the_cpu_is_not_compared(tmp_path: Path) -> None:
    runs = [trained("pytorch", "cuda:0 (NVIDIA H200)"), trained("tensorflow", "cpu"), trained("jax", "cpu")]
    verdict = parity.mnist_parity(RunConfig(task="mnist", out=str(tmp_path)), runs)
    assert parity.headline(verdict) == MIXED
    assert (verdict["status"], verdict["passed"], verdict["checks"], verdict["compared"]) == (
        parity.NOT_COMPARED,
        False,
        [],
        [],
    )
    doc = {"config": {"benchmark": False}, "runs": runs, "parity": verdict}
    assert compare.exit_code(doc) == 1


def test_two_on_gpus_and_one_on_the_cpu_name_each_device() -> None:
    curve = [[1.0, 2.0], [1.5, 2.5]]
    runs = [
        trained("pytorch", "cuda:0 (NVIDIA H200)", final_loss=0.5, trajectory=curve),
        trained("tensorflow", "cpu", final_loss=0.5, trajectory=curve),
        trained("jax", "gpu:0 (NVIDIA H200)", final_loss=0.5, trajectory=curve),
    ]
    verdict = parity.plane_parity(runs, {"a": 1.0, "b": 2.0, "loss": 0.5})
    assert parity.headline(verdict).startswith(
        "NOT COMPARED: pytorch ran on cuda:0 (NVIDIA H200), jax on gpu:0 (NVIDIA H200), tensorflow on the CPU; "
    )
    same = [{**r, "device": "cuda:0 (NVIDIA H200)"} for r in runs]  # all on the GPU: compared as ever
    assert parity.headline(parity.plane_parity(same, {"a": 1.0, "b": 2.0, "loss": 0.5})) == "AGREE"


def test_results_with_setups_validate_and_a_damaged_setup_is_named() -> None:
    runs = [
        {**trained("pytorch", "cuda:0 (NVIDIA H200)"), "step_losses": [2.3], "final_loss": 0.04, "train_seconds": 1}
    ]
    runs[0]["setup"] = H200_RUN["setup"]
    cfg = RunConfig(task="mnist").to_dict()
    doc = results.build("mnist", cfg, environment.describe(0), runs, parity.verdict([], runs))
    assert doc["environment"]["frameworks"] == {}  # no version recorded: nothing to name
    results.validate(doc)
    runs[0]["setup"] = {"devices": "cpu", "kernels": "oneDNN"}
    with pytest.raises(results.Malformed, match=r"^runs\[0\]\.setup\.devices is not a list$"):
        results.validate(doc)
    runs[0]["setup"] = {"devices": ["cpu"], "kernels": "oneDNN", "no_gpu": {"fix": None}}
    with pytest.raises(results.Malformed, match=r"^missing runs\[0\]\.setup\.no_gpu\.reason$"):
        results.validate(doc)
