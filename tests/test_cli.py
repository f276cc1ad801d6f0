"""compare.py's exit codes and one-line messages for input a user can get wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.environment import gpu_visible
from common.weights import mnist_init
from tests.conftest import run_compare


def refused(*args: str) -> str:
    """Run compare.py, expect exit 2 and exactly one line on stderr; return that line."""
    proc = run_compare(*args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_unknown_task() -> None:
    assert refused("--task", "cifar").startswith("error: argument --task: invalid choice: 'cifar'")


def test_unknown_dataset() -> None:
    assert refused("--dataset", "cifar") == (
        "error: argument --dataset: invalid choice: 'cifar' (choose from 'mnist', 'fashion-mnist') (see --help)"
    )


def test_unknown_framework() -> None:
    assert refused("--task", "plane", "--frameworks", "torch,jax") == (
        "error: unknown framework 'torch'; choose from pytorch, tensorflow, jax"
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--epochs", "0"), ("--batch-size", "-1"), ("--lr", "0"), ("--train-limit", "0"), ("--steps", "-5")],
)
def test_non_positive_numbers(flag: str, value: str) -> None:
    assert refused("--task", "mnist", flag, value) == f"error: {flag} must be positive, got {value}"


def test_batch_larger_than_the_training_set() -> None:
    assert refused("--train-limit", "500", "--batch-size", "1000") == (
        "error: --batch-size 1000 is larger than the training set (500 examples)"
    )


def test_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert refused("--data-dir", str(missing)) == (
        f"error: --data-dir {missing}: not a directory; create it or point elsewhere"
    )


def test_out_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert refused("--task", "plane", "--out", str(out)) == f"error: --out {out} is a file; give a directory"


def test_existing_results_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    line = refused("--task", "plane", "--out", str(tmp_path))
    assert line == f"error: --out {tmp_path} already holds results.json; pass --overwrite or choose another directory"
    assert (tmp_path / "results.json").read_text() == "{}"


def test_eval_params_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.npz"
    assert refused("--eval-params", str(path)) == f"error: {path}: no such checkpoint file"


def test_eval_params_missing_key(tmp_path: Path) -> None:
    params = mnist_init(0)
    del params["fc.bias"]
    path = tmp_path / "p.npz"
    np.savez(path, **params)
    assert refused("--eval-params", str(path)).startswith(f"error: {path}: missing keys ['fc.bias']")


def test_eval_params_wrong_shape(tmp_path: Path) -> None:
    params = mnist_init(0)
    params["conv1.weight"] = params["conv1.weight"][:, :, :3]
    path = tmp_path / "p.npz"
    np.savez(path, **params)
    assert refused("--eval-params", str(path)) == (
        f"error: {path}: conv1.weight has shape (24, 1, 3, 5), expected (24, 1, 5, 5)"
    )


def test_eval_params_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    params: dict = dict(mnist_init(0))
    params["fc.bias"] = np.array([{"run": "code"}], dtype=object)
    path = tmp_path / "p.npz"
    np.savez(path, **params)
    assert refused("--eval-params", str(path)) == (
        f"error: {path}: holds pickled objects, which are never loaded; save plain arrays"
    )


def test_eval_params_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    assert refused("--eval-params", str(path)) == (
        f"error: {path}: a damaged .npz checkpoint (its zip archive is incomplete); "
        "save the canonical arrays with np.savez(path, **params)"
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--lr", "nan"), ("--lr", "inf"), ("--timeout", "nan"), ("--timeout", "-inf")],
)
def test_numbers_must_be_finite(flag: str, value: str) -> None:
    """A nan --timeout would never fire; a nan --lr would train on garbage."""
    line = refused("--task", "mnist", f"{flag}={value}")  # '=': argparse would take '-inf' for an option
    assert line == f"error: {flag} must be a finite number, got {float(value)}"


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range(seed: str) -> None:
    assert refused("--task", "plane", "--seed", seed) == f"error: --seed must be between 0 and 4294967295, got {seed}"


def test_benchmark_refuses_the_plane_task() -> None:
    assert refused("--task", "plane", "--benchmark") == (
        "error: --benchmark times the MNIST training step; it does not apply to --task plane"
    )


def test_benchmark_refuses_eval_params(tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, **mnist_init(0))
    assert refused("--benchmark", "--eval-params", str(path)) == (
        "error: --benchmark times training and --eval-params scores a checkpoint: choose one"
    )


def test_eval_params_refuses_a_single_npy_array(tmp_path: Path) -> None:
    path = tmp_path / "conv1.npy"
    np.save(path, mnist_init(0)["conv1.weight"])
    assert refused("--eval-params", str(path)) == (
        f"error: {path}: a single .npy array, not a .npz checkpoint of named arrays; "
        "save the canonical arrays with np.savez(path, **params)"
    )


def test_eval_params_refuses_a_text_file(tmp_path: Path) -> None:
    """np.load would try to unpickle it and say 'pickled data', which would be wrong."""
    path = tmp_path / "weights.txt"
    path.write_text("0.1 0.2 0.3\n")
    assert refused("--eval-params", str(path)) == (
        f"error: {path}: not a .npz checkpoint (np.savez writes a zip of named arrays); "
        "save the canonical arrays with np.savez(path, **params)"
    )


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_device_gpu_without_a_gpu_is_refused_before_anything_starts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert refused("--device", "gpu", "--task", "plane", "--out", str(out)) == (
        "error: --device gpu: this machine shows no GPU (no NVIDIA device); use --device auto or cpu"
    )
    assert not out.exists()  # validated first, created after


def test_results_of_an_earlier_seed_are_not_overwritten(tmp_path: Path) -> None:
    """A --seeds run killed before its summary leaves only seed-<s>/results.json behind."""
    (tmp_path / "seed-3").mkdir()
    (tmp_path / "seed-3" / "results.json").write_text("{}")
    line = refused("--task", "plane", "--out", str(tmp_path))
    assert (
        line
        == f"error: --out {tmp_path} already holds seed-3/results.json; pass --overwrite or choose another directory"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--benchmark", "--batch-size", "0,100"), "error: --batch-size must be positive, got 0"),
        (
            ("--benchmark", "--batch-size", "32,,100"),
            "error: --batch-size must be a whole number or a comma-separated list of them, got '32,,100'",
        ),
        (("--benchmark", "--repeat", "0"), "error: --repeat must be positive, got 0"),
        (("--benchmark", "--windows", "-2"), "error: --windows must be positive, got -2"),
        (
            ("--batch-size", "32,100"),
            "error: --batch-size takes one value without --benchmark (lists are for --benchmark), got 32,100",
        ),
        (
            ("--settings", "defaults,fastest"),
            "error: --settings takes one value without --benchmark (lists are for --benchmark), got defaults,fastest",
        ),
        (("--benchmark", "--settings", "turbo"), "error: unknown settings turbo; choose from defaults, fastest"),
        (("--repeat", "3"), "error: --repeat applies to --benchmark only"),
        (("--textbook",), "error: --textbook applies to --benchmark only"),
        (
            ("--benchmark", "--train-limit", "500", "--batch-size", "100,1000"),
            "error: --batch-size 1000 is larger than the training set (500 examples)",
        ),
    ],
)
def test_benchmark_lists_and_options(args: tuple[str, ...], expected: str) -> None:
    assert refused("--task", "mnist", *args) == expected
