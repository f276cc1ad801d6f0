"""MNIST parity: converters, shared start, first step, float64 steps, checkpoints, accuracy."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from common.config import MnistConfig
from common.layout import conv_hwio_to_oihw, conv_oihw_to_hwio, fc_chw_to_hwc, fc_hwc_to_chw, from_nhwc, to_nhwc
from common.weights import mnist_init
from tests.conftest import load_results, run_compare, runs_by_framework

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
FRAMEWORK_PARAMS = [pytest.param(f, marks=getattr(pytest.mark, f)) for f in FRAMEWORKS]
ALL_THREE = [pytest.mark.pytorch, pytest.mark.tensorflow, pytest.mark.jax]


def check_value(doc: dict, prefix: str) -> dict:
    [found] = [c for c in doc["parity"]["checks"] if c["name"].startswith(prefix)]
    return found


def test_fc_rows_follow_the_flatten_order() -> None:
    """W @ flatten_CHW(a) == K.T @ flatten_HWC(a): the permutation, not just a transpose."""
    rng = np.random.default_rng(1)
    activation = rng.normal(size=(32, 7, 7))
    w = rng.normal(size=(10, 1568))
    chw = activation.reshape(-1)
    hwc = activation.transpose(1, 2, 0).reshape(-1)
    np.testing.assert_allclose(w @ chw, fc_chw_to_hwc(w).T @ hwc, rtol=1e-12)
    assert not np.allclose(w @ chw, w @ hwc)  # a plain transpose would be wrong


def test_layout_round_trips_are_exact() -> None:
    params = mnist_init(0)
    w = params["conv2.weight"]
    np.testing.assert_array_equal(conv_hwio_to_oihw(conv_oihw_to_hwio(w)), w)
    np.testing.assert_array_equal(fc_hwc_to_chw(fc_chw_to_hwc(params["fc.weight"])), params["fc.weight"])
    for key, value in from_nhwc(to_nhwc(params)).items():
        np.testing.assert_array_equal(value, params[key])


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_framework_round_trip_is_exact(framework: str) -> None:
    """canonical -> framework layout -> canonical gives back the very same numbers."""
    mnist = importlib.import_module(f"frameworks.{framework}.mnist")
    params = mnist_init(7)
    model = mnist.create_model(MnistConfig(), params, "cpu")
    back = mnist.get_params(model)
    assert set(back) == set(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key], err_msg=key)


@pytest.mark.parametrize("framework", FRAMEWORK_PARAMS)
def test_native_init_follows_the_seed(framework: str) -> None:
    """--init native --seed N: each framework's own initialisers, drawn from N (JAX too)."""
    mnist = importlib.import_module(f"frameworks.{framework}.mnist")
    first, again, other = (mnist.get_params(mnist.create_model(MnistConfig(), None, "cpu", seed=s)) for s in (1, 1, 2))
    assert {k: v.shape for k, v in first.items()} == {k: v.shape for k, v in mnist_init(0).items()}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not np.array_equal(first["conv1.weight"], other["conv1.weight"])


@pytest.mark.slow
class TestShortRun:
    """One epoch on 5,000 examples from the shared start (the session fixture short_mnist)."""

    pytestmark = ALL_THREE

    def test_exit_code_and_verdict(self, short_mnist) -> None:
        out, proc = short_mnist
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "AGREE" in proc.stdout
        assert load_results(out)["parity"]["passed"] is True

    def test_initial_logits_and_first_step_agree(self, short_mnist) -> None:
        doc = load_results(short_mnist[0])
        assert check_value(doc, "initial logits")["value"] <= 1e-5
        assert check_value(doc, "first-step loss")["value"] <= 1e-6
        assert check_value(doc, "first-step gradients")["value"] <= 1e-4
        probes = {f: np.load(short_mnist[0] / "probes" / f"{f}.npz") for f in FRAMEWORKS}
        assert probes["pytorch"]["logits"].shape == (100, 10)
        assert float(probes["pytorch"]["loss"]) == pytest.approx(np.log(10), abs=0.1)  # near-uniform start

    def test_every_framework_learns(self, short_mnist) -> None:
        runs = runs_by_framework(load_results(short_mnist[0]))
        for framework, run in runs.items():
            assert run["status"] == "ok", framework
            assert run["test_accuracy"] >= 0.90, framework  # 93.5% measured on this subset
            assert len(run["step_losses"]) == 50
            assert run["epochs"][0]["test_accuracy"] == run["test_accuracy"]
            assert run["step_losses"][-1] < run["step_losses"][0] / 3

    def test_outcomes_agree(self, short_mnist) -> None:
        doc = load_results(short_mnist[0])
        assert check_value(doc, "test accuracy")["value"] <= 0.5
        assert check_value(doc, "test loss")["value"] <= 0.03

    def test_checkpoint_exchange(self, short_mnist, tmp_path: Path) -> None:
        """Weights trained in PyTorch score identically in all three frameworks."""
        out = short_mnist[0]
        trained = runs_by_framework(load_results(out))["pytorch"]
        proc = run_compare("--eval-params", str(out / trained["params"]), "--out", str(tmp_path / "eval"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = load_results(tmp_path / "eval")
        accuracies = {r["framework"]: r["test_accuracy"] for r in doc["runs"]}
        assert len(set(accuracies.values())) == 1, accuracies
        assert accuracies["pytorch"] == trained["test_accuracy"]
        assert check_value(doc, "test logits")["value"] <= 1e-4


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_float64_step_losses_agree(tmp_path: Path) -> None:
    """In float64 the three compute the same function and the same update: 100 steps within 1e-12.

    Batches of 20 make the 100 steps cheap: PyTorch's float64 convolutions have no oneDNN kernel.
    """
    out = tmp_path / "f64"
    args = ("--dtype", "float64", "--train-limit", "2000", "--batch-size", "20", "--epochs", "1")
    proc = run_compare(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check = check_value(load_results(out), "first 100 step losses (float64)")
    assert check["tolerance"] == 1e-12
    assert check["passed"] and check["value"] <= 1e-12  # measured 5.2e-14 (2.8e-15 at batch 100)
