"""Framework differences that are documented rather than removed (docs/differences.md)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from common.config import MnistConfig
from common.verdict import parity
from tests.conftest import load_results, run_compare

B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


def one_adam_step(framework: str, grad: np.ndarray, eps: float) -> np.ndarray:
    """The update of one Adam step from w = 0 with gradient `grad`, in float64."""
    if framework == "pytorch":
        import torch

        w = torch.zeros(len(grad), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=LR, betas=(B1, B2), eps=eps)
        w.grad = torch.tensor(grad)
        opt.step()
        return w.detach().numpy()
    if framework == "tensorflow":
        import tensorflow as tf

        floatx = tf.keras.backend.floatx()
        tf.keras.backend.set_floatx("float64")  # else the learning-rate variable is float32
        try:
            w = tf.Variable(np.zeros(len(grad)))
            # NumPy float64 constants: Keras casts Python floats through float32 (see below).
            opt = tf.keras.optimizers.Adam(LR, beta_1=np.float64(B1), beta_2=np.float64(B2), epsilon=np.float64(eps))
            opt.apply_gradients([(tf.constant(grad), w)])
            return w.numpy()
        finally:
            tf.keras.backend.set_floatx(floatx)
    import jax
    import optax

    with jax.enable_x64(True):  # JAX computes in float32 unless x64 is on
        tx = optax.adam(LR, b1=B1, b2=B2, eps=eps, eps_root=0.0)
        w = np.zeros(len(grad))
        updates, _ = tx.update(grad, tx.init(w), w)
        return w + np.asarray(updates)


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_keras_adam_epsilon_is_epsilon_hat() -> None:
    """Keras adds epsilon before bias correction: with the same eps, small gradients move less.

    Keras: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps); PyTorch and Optax:
    w -= lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t)+eps). Keras's eps equals PyTorch's
    eps*sqrt(1-b2^t), a factor that changes every step, so no constant makes them agree.
    """
    grad = np.array([1e-9, 1e-7, 1e-3, 1.0])  # eps matters only when |g| is near it
    torch_step = one_adam_step("pytorch", grad, EPS)
    keras_step = one_adam_step("tensorflow", grad, EPS)
    np.testing.assert_allclose(one_adam_step("jax", grad, EPS), torch_step, rtol=1e-12)  # same rule
    assert abs(keras_step[0]) < abs(torch_step[0]) / 20  # tiny gradient: Keras's eps dominates
    np.testing.assert_allclose(keras_step[3], torch_step[3], rtol=1e-6)  # large gradient: ~same
    # Keras with eps is exactly PyTorch with eps / sqrt(1 - b2^t) at t = 1:
    np.testing.assert_allclose(keras_step, one_adam_step("pytorch", grad, EPS / np.sqrt(1 - B2)), rtol=1e-12)


@pytest.mark.tensorflow
def test_keras_casts_python_floats_through_float32() -> None:
    """Why frameworks/tensorflow/mnist.py passes optimizer constants as np.float64.

    Keras's SGD and Adam cast their Python-float constants (momentum, betas, epsilon) to the
    variable's dtype via a float32 tensor: 0.9 becomes 0.8999999761581421 in a float64 run,
    which moved float64 SGD losses apart by 1e-9 after 2 steps and 4e-7 after 30.
    """
    from keras import ops

    assert float(ops.cast(0.9, "float64")) == float(np.float32(0.9)) != 0.9
    assert float(ops.cast(np.float64(0.9), "float64")) == 0.9


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_adam_runs_still_agree_on_mnist(tmp_path: Path) -> None:
    """Keras's epsilon set each step to PyTorch's placement (adam_epsilon): Adam runs agree in every float64 stage."""
    out = tmp_path / "adam"
    proc = run_compare("--optimizer", "adam", "--train-limit", "2000", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = load_results(out)
    assert doc["parity"]["passed"]
    assert all(stage["passed"] for stage in doc["parity"]["stages"])
    # Early steps are where Keras's own epsilon-hat differed most from eps; they agree to float32 noise.
    runs = [r["step_losses"][:5] for r in doc["runs"]]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-4)


def native_params(framework: str) -> dict[str, np.ndarray]:
    mnist = importlib.import_module(f"frameworks.{framework}.mnist")
    return mnist.get_params(mnist.create_model(MnistConfig(), None, "cpu"))


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_native_initialisers_differ() -> None:
    """--init native: PyTorch U(+-1/sqrt(fan_in)) with random bias, Keras Glorot uniform and
    zero bias, Flax LeCun normal and zero bias; conv1 has fan_in 25 and fan_out 600."""
    torch_p, keras_p, flax_p = (native_params(f) for f in ("pytorch", "tensorflow", "jax"))
    fan_in, fan_out = 25, 24 * 25
    assert np.std(torch_p["conv1.weight"]) == pytest.approx(1 / np.sqrt(fan_in) / np.sqrt(3), rel=0.1)
    assert np.std(keras_p["conv1.weight"]) == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.1)
    assert np.std(flax_p["conv1.weight"]) == pytest.approx(1 / np.sqrt(fan_in), rel=0.1)
    assert np.any(torch_p["conv1.bias"] != 0)
    assert not np.any(keras_p["conv1.bias"]) and not np.any(flax_p["conv1.bias"])


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_native_init_end_to_end(tmp_path: Path) -> None:
    """--init native: no shared start for the training, so no probes; the outcome checks with the NATIVE tolerances.

    The float64 stages still run from the shared weights: they check the recipe, not the start."""
    out = tmp_path / "native"
    proc = run_compare("--init", "native", "--seed", "3", "--train-limit", "2000", "--epochs", "1", "--out", str(out))
    doc = load_results(out)
    runs = {r["framework"]: r for r in doc["runs"]}
    assert all(r["status"] == "ok" for r in runs.values()), proc.stderr
    assert not (out / "probes").exists()
    tolerances = {c["name"]: c["tolerance"] for c in doc["parity"]["checks"]}
    assert tolerances == {
        **dict.fromkeys(parity.STAGE_CHECKS.values(), 1e-12),  # the float64 stages start from the shared weights
        parity.STAGE_CHECKS["loop"]: 0.0,  # and the loop follows the shared batch order: exactly
        "test accuracy: max pairwise difference (points)": 1.0,
        "test loss: max pairwise difference": 0.05,
    }
    first = sorted(r["step_losses"][0] for r in runs.values())
    assert first[1] - first[0] > 1e-3 and first[2] - first[1] > 1e-3  # three different starting points
    for name, run in runs.items():
        # 20 steps from its own start. Lowest, TensorFlow (Glorot): 78.2% (AMD EPYC, AVX2), 78.19% (Intel Xeon,
        # AVX-512 oneDNN), 78.22% (same Xeon, ONEDNN_MAX_CPU_ISA=AVX2): 8 points above the bound.
        assert run["test_accuracy"] > 0.7, name
    assert proc.returncode == (0 if doc["parity"]["passed"] else 1)


MAX_POOL_TIE = np.array([[0.1, 0.1], [0.3, 0.3]], dtype=np.float32)  # one 2x2 window, its maximum tied


def tie_gradients() -> dict[str, np.ndarray]:
    """d sum(max_pool(x)) / dx for the tied window, as each implementation routes it."""
    import jax
    import jax.numpy as jnp
    import tensorflow as tf
    import torch
    import torch.nn.functional as F
    from flax import nnx

    from frameworks.jax.mnist import max_pool

    x = torch.tensor(MAX_POOL_TIE[None, None], requires_grad=True)  # NCHW
    F.max_pool2d(x, kernel_size=2).sum().backward()
    xt = tf.Variable(MAX_POOL_TIE[None, :, :, None])  # NHWC
    with tf.GradientTape() as tape:
        pooled = tf.reduce_sum(tf.keras.layers.MaxPooling2D(2)(xt))
    xj = jnp.asarray(MAX_POOL_TIE[None, :, :, None])
    return {
        "pytorch": x.grad.numpy().ravel(),
        "tensorflow": tape.gradient(pooled, xt).numpy().ravel(),
        "jax (reshape + max, this project)": np.asarray(jax.grad(lambda a: max_pool(a).sum())(xj)).ravel(),
        "jax (nnx.max_pool)": np.asarray(jax.grad(lambda a: nnx.max_pool(a, (2, 2), strides=(2, 2)).sum())(xj)).ravel(),
    }


@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_max_pool_tie_rule() -> None:
    """docs/differences.md row 14: at an exact tie, the first maximum takes the whole gradient, except in
    this project's JAX pool (reshape + max), whose max splits it evenly; nnx.max_pool picks one like the others."""
    grads = tie_gradients()
    for name in ("pytorch", "tensorflow", "jax (nnx.max_pool)"):
        np.testing.assert_array_equal(grads[name], [0, 0, 1, 0], err_msg=name)
    np.testing.assert_array_equal(grads["jax (reshape + max, this project)"], [0, 0, 0.5, 0.5])
