"""What a worker hands back is checked before the verdict reads it: a bad array or entry fails its framework in
one line, and the others are compared and written as always (common/verdict/handback.py).

Each case takes the shared short run's files (tests/conftest.py, short_mnist), spoils one framework's hand-back
as a broken port would, and runs compare.py's own path from the workers' results on (launch.run_all onwards,
with the workers' entries as they were returned).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import compare
from common.config import RunConfig
from common.run import launch
from tests.conftest import load_results, runs_by_framework

pytestmark = [pytest.mark.slow, pytest.mark.pytorch, pytest.mark.tensorflow, pytest.mark.jax]


def respoiled(path: Path, key: str, value: np.ndarray | None) -> None:
    """One key of an .npz replaced (None: left out)."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != key}
    if value is not None:
        arrays[key] = value
    np.savez(path, **arrays)


def bfloat16_loss(run: Path) -> None:
    """JAX's loss left in bfloat16 under --precision bfloat16: NumPy reads it as V2."""
    path = run / "probes" / "jax.npz"
    with np.load(path) as npz:
        respoiled(path, "loss", npz["loss"].astype(ml_dtypes.bfloat16))


def transposed_logits(run: Path) -> None:
    path = run / "stages" / "tensorflow.npz"
    with np.load(path) as npz:
        respoiled(path, "layer/fc", npz["layer/fc"].T)


def nan_weight(run: Path) -> None:
    path = run / "params" / "pytorch.npz"
    with np.load(path) as npz:
        bias = npz["fc.bias"].copy()
    bias[3] = np.nan
    respoiled(path, "fc.bias", bias)


def no_learning_rate(run: Path) -> None:
    respoiled(run / "loops" / "jax.npz", "hyper/lr", None)


def no_probe(run: Path) -> None:
    (run / "probes" / "tensorflow.npz").unlink()


CASES = {
    "bfloat16 loss": (
        bfloat16_loss,
        "jax",
        "jax handed back probes/jax.npz whose loss is V2, as NumPy reads bfloat16, expected float32",
    ),
    "transposed layer": (
        transposed_logits,
        "tensorflow",
        "tensorflow handed back stages/tensorflow.npz whose layer/fc has shape (10, 100), expected (100, 10)",
    ),
    "NaN weight": (nan_weight, "pytorch", "pytorch handed back params/pytorch.npz whose fc.bias holds nan at (3,)"),
    "missing key": (no_learning_rate, "jax", "jax handed back loops/jax.npz without hyper/lr"),
    "missing file": (no_probe, "tensorflow", "tensorflow handed back no probes/tensorflow.npz"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_bad_hand_back_fails_its_framework_in_one_line_and_the_rest_is_written(
    case: str, short_mnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    spoil, framework, error = CASES[case]
    code, doc, out = rerun(short_mnist, tmp_path, monkeypatch, capsys, spoil)
    runs = runs_by_framework(doc)
    assert runs[framework]["status"] == "failed" and runs[framework]["error"] == error
    others = [name for name in runs if name != framework]
    assert all(runs[name]["status"] == "ok" for name in others)
    assert code == 1 and (tmp_path / "run" / "report.md").is_file()
    assert f"AGREE ({' and '.join(others)} only; {framework} failed)" in out


def test_an_entry_without_a_number_fails_its_framework(short_mnist, tmp_path: Path, monkeypatch, capsys) -> None:
    def drop_accuracy(entries: dict) -> None:
        del entries["pytorch"]["test_accuracy"]

    code, doc, out = rerun(short_mnist, tmp_path, monkeypatch, capsys, lambda run: None, drop_accuracy)
    assert runs_by_framework(doc)["pytorch"]["error"] == "pytorch handed back an entry without test_accuracy"
    assert code == 1 and "AGREE (tensorflow and jax only; pytorch failed)" in out


def rerun(
    short_mnist,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    spoil: Callable,
    edit: Callable = lambda entries: None,
) -> tuple[int, dict, str]:
    """compare.py's path from the workers' results on, over a spoiled copy of the short run's files."""
    out, _ = short_mnist
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("results.json", "report.md", "*.png"))
    earlier = load_results(out)
    cfg = RunConfig.from_dict({**earlier["config"], "out": str(run), "quiet": True})
    entries = runs_by_framework(earlier)
    edit(entries)
    spoil(run)
    monkeypatch.setattr(launch, "run_one", lambda framework, *args, **kwargs: entries[framework])
    code = compare.run(cfg)
    return code, load_results(run), capsys.readouterr().out
