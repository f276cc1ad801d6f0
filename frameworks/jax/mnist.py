"""The MNIST CNN in JAX: Flax NNX layers, NHWC arrays, an Optax step under jax.jit."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common.config import MnistConfig, RunConfig
from common.data import Mnist, batch_order, chunks
from common.layout import activations_from_nhwc, from_nhwc, to_nhwc
from common.recorder import Recorder

LAYERS = ("conv1", "conv2", "fc")


class Net(nnx.Module):
    """conv 1->24 5x5, ReLU, pool 2 -> conv 24->32 5x5, ReLU, pool 2 -> dense 1568->10."""

    def __init__(self, dtype: str, rngs: nnx.Rngs, precision: str = "float32") -> None:
        # --precision bfloat16: Flax's per-module dtype (computation) and param_dtype (weights)
        compute = "bfloat16" if precision == "bfloat16" else dtype
        # Flax's Conv defaults to padding="SAME", which pads 2 on each side for 5x5.
        self.conv1 = nnx.Conv(1, 24, kernel_size=(5, 5), padding="SAME", dtype=compute, param_dtype=dtype, rngs=rngs)
        self.conv2 = nnx.Conv(24, 32, kernel_size=(5, 5), padding="SAME", dtype=compute, param_dtype=dtype, rngs=rngs)
        self.fc = nnx.Linear(32 * 7 * 7, 10, dtype=compute, param_dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.layer_outputs(x)["fc"]

    def layer_outputs(self, x: jax.Array) -> dict[str, jax.Array]:
        """Every layer's output, in order: __call__ returns the last, the float64 stages compare them all."""
        out = {"conv1": self.conv1(x)}
        out["relu1"] = nnx.relu(out["conv1"])
        out["pool1"] = max_pool(out["relu1"])
        out["conv2"] = self.conv2(out["pool1"])
        out["relu2"] = nnx.relu(out["conv2"])
        out["pool2"] = max_pool(out["relu2"])
        out["flatten"] = out["pool2"].reshape(x.shape[0], -1)  # NHWC flattens as H, W, C
        out["fc"] = self.fc(out["flatten"])
        return out


def max_pool(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, as reshape + max over each 2x2 block.

    nnx.max_pool (reduce_window) gives the same values, but XLA's CPU backend differentiates
    it through a slow select-and-scatter: a whole step took 2.4x longer (120 vs 50 ms at
    batch 100 on 2 cores; docs/performance.md).
    """
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def create_model(cfg: MnistConfig, params: dict[str, np.ndarray] | None, device: str, seed: int = 0) -> Net:
    """A Net in cfg.dtype, from canonical weights or Flax's own initialisers (drawn from `seed`)."""
    if params is None:
        return Net(cfg.dtype, nnx.Rngs(seed), cfg.precision)  # Flax has no global seed: the key is passed in
    # Shapes only, then the given weights (Flax's checkpoint-restore pattern): running the
    # initialisers op by op only to overwrite them took 3.2 s on 2 CPU cores (now 0.1 s).
    model = nnx.eval_shape(lambda: Net(cfg.dtype, nnx.Rngs(0), cfg.precision))
    load_params(model, params)
    return model


def load_params(model: Net, params: dict[str, np.ndarray]) -> None:
    """Canonical (OIHW, C*H*W fc columns) -> Flax (HWIO, H*W*C fc rows)."""
    for name, (kernel, bias) in to_nhwc(params).items():
        layer = getattr(model, name)
        layer.kernel.value = jnp.asarray(kernel, dtype=layer.kernel.value.dtype)
        layer.bias.value = jnp.asarray(bias, dtype=layer.bias.value.dtype)


def get_params(model: Net) -> dict[str, np.ndarray]:
    return from_nhwc(
        {
            name: (np.asarray(getattr(model, name).kernel.value), np.asarray(getattr(model, name).bias.value))
            for name in LAYERS
        }
    )


def make_optimizer(cfg: MnistConfig, model: Net) -> nnx.Optimizer:
    """Every constant spelled out, so the three frameworks visibly use the same ones."""
    # Optax: inject_hyperparams keeps the numeric hyperparameters in the optimizer state, where they can be
    # read (hyperparameters) and changed; the update is the same function of the same numbers
    if cfg.optimizer == "sgd":
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=cfg.lr, momentum=cfg.momentum, nesterov=False)
    else:
        adam = optax.inject_hyperparams(optax.adam)
        tx = adam(learning_rate=cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps, eps_root=0.0)
    return nnx.Optimizer(model, tx, wrt=nnx.Param)


def hyperparameters(optimizer: nnx.Optimizer) -> dict[str, jax.Array]:
    """The recipe's hyperparameters in force, as Optax's users log them: from the state inject_hyperparams keeps
    (arrays on the device: the Recorder copies them to the host once)."""
    h = optimizer.opt_state.hyperparams
    if "momentum" in h:  # SGD
        return {"lr": h["learning_rate"][...], "momentum": h["momentum"][...]}
    return {"lr": h["learning_rate"][...], "beta1": h["b1"][...], "beta2": h["b2"][...]}


def loss_fn(model: Net, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy of the logits; Optax returns one loss per example."""
    # Flax casts nothing outside its modules: the loss in the weights' dtype (float32 under --precision
    # bfloat16), as PyTorch's autocast and Keras's float32 output layer compute it
    logits = model(x).astype(model.fc.param_dtype)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit  # traced and compiled once; NNX carries the model and optimizer state through
def train_step(model: Net, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array, idx: jax.Array) -> jax.Array:
    """One optimizer step on the batch x[idx], y[idx]; returns the loss, still on the device."""
    x, y = x[idx], y[idx]  # gathered inside the compiled step: one dispatch per step, not three
    # Forward pass
    # Compute gradients (JAX differentiates the whole loss function in one call)
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
    # Update weights
    optimizer.update(model, grads)
    return loss


def to_device(images: np.ndarray, labels: np.ndarray, device: str) -> tuple[jax.Array, jax.Array]:
    """Copy a whole split to the device once; steps then gather batches there."""
    x = jnp.asarray(images[..., np.newaxis])  # NHWC: the channel axis comes last
    return x, jnp.asarray(labels)


@nnx.jit  # one compiled program per batch shape
def forward(model: Net, x: jax.Array) -> jax.Array:
    return model(x).astype(model.fc.param_dtype)  # NumPy has no bfloat16: the logits in the weights' dtype


def predict(model: Net, x: jax.Array, batch_size: int) -> np.ndarray:
    """Logits for every row of x (the last batch may be smaller: nothing is dropped)."""
    return np.concatenate([np.asarray(forward(model, x[i : i + batch_size])) for i in range(0, len(x), batch_size)])


def probe(model: Net, images: np.ndarray, labels: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """Every layer's output, the loss and the gradients of the model on one batch, without an update."""
    x, y = to_device(images, labels, device)
    # Compiled as one program: op by op, every primitive is compiled on first use (4.8 s vs 1.5 s).
    (loss, logits), grads = nnx.jit(nnx.value_and_grad(loss_fn, has_aux=True))(model, x, y)
    numpy_grads = {
        name: (np.asarray(grads[name]["kernel"].value), np.asarray(grads[name]["bias"].value)) for name in LAYERS
    }
    outputs = jax.device_get(nnx.jit(Net.layer_outputs)(model, x))
    dtype = model.fc.param_dtype  # mixed precision's bfloat16 outputs are read in the weights' dtype
    layers = activations_from_nhwc({name: np.asarray(v, dtype=dtype) for name, v in outputs.items()})
    return {
        "logits": np.asarray(logits),
        "loss": np.asarray(loss),
        **{f"grad/{n}": g for n, g in from_nhwc(numpy_grads).items()},
        **{f"layer/{n}": v for n, v in layers.items()},
    }


def train(cfg: RunConfig, model: Net, data: Mnist, recorder: Recorder, device: str) -> None:
    """Train for cfg.mnist.epochs on the shared batch order, scoring the test set each epoch."""
    m = cfg.mnist
    optimizer = make_optimizer(m, model)
    x_train, y_train = to_device(data.train_images, data.train_labels, device)
    x_test, _ = to_device(data.test_images, data.test_labels, device)
    for epoch in range(m.epochs):
        order = batch_order(len(y_train), m.batch_size, cfg.seed, epoch)
        start = time.perf_counter()
        for chunk in chunks(order, m.log_every):
            losses = []
            for idx in chunk:
                recorder.batch(idx, hyperparameters(optimizer))  # what this step trains on, and with what
                losses.append(train_step(model, optimizer, x_train, y_train, jnp.asarray(idx)))
            recorder.steps(np.asarray(jax.device_get(losses)))  # one host read per chunk
        seconds = time.perf_counter() - start
        recorder.epoch(seconds, predict(model, x_test, m.eval_batch_size))
