"""compare.py's exit codes and one-line messages for input a user can get wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
