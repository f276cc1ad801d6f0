"""The Flax NNX MNIST tutorial's training loop (flax, docs_nnx/mnist_tutorial) timed as the benchmark's bar.

As the tutorial trains: the model pools with Flax's own pooling op (`nnx.max_pool`; the
tutorial's CNN uses `nnx.avg_pool`, the same reduce_window), the step is an `nnx.jit` function
over `nnx.value_and_grad` that updates an `nnx.MultiMetric` (accuracy, average loss) and the
`nnx.Optimizer` in place, and each step is fed a dict of NumPy arrays sliced on the host from a
shuffled training set (the tutorial's `make_batches`), so every step copies its batch to the
device. What is this project's: the layers, their shared initial weights and the optimizer
(mnist.py), and reading the metrics (`compute`, then `reset`, as the tutorial logs them every
`eval_every` steps) at the protocol's window ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from common import timing
from common.config import RunConfig
from common.data import Mnist
from frameworks.jax import bench, mnist


class TutorialNet(mnist.Net):
    """mnist.Net with the tutorial's pooling: Flax's reduce_window pool instead of reshape + max."""

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.max_pool(nnx.relu(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = nnx.max_pool(nnx.relu(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)  # flatten
        return self.fc(x)


def loss_fn(model: TutorialNet, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    logits = model(batch["image"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["label"]).mean()
    return loss, logits


@nnx.jit
def train_step(
    model: TutorialNet, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch: dict[str, jax.Array]
) -> None:
    """Train for a single step (the tutorial's train_step, without the dropout rngs this model has no use for)."""
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])  # In-place updates.
    optimizer.update(model, grads)  # In-place updates.


def make_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> Iterator[dict[str, Any]]:
    """NumPy batches of a freshly shuffled training set, epoch after epoch, incomplete batches dropped."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            yield {"image": images[idx][..., np.newaxis], "label": labels[idx]}


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    """The tutorial's loop under common.timing's protocol; the same signature as bench.benchmark."""
    m = cfg.mnist
    model = TutorialNet(m.dtype, nnx.Rngs(0))
    mnist.load_params(model, init)
    optimizer = mnist.make_optimizer(m, model)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    batches = make_batches(data.train_images, data.train_labels, m.batch_size, cfg.seed)

    def run_steps(n: int) -> float:
        for _ in range(n):
            train_step(model, optimizer, metrics, next(batches))
        loss = float(metrics.compute()["loss"])  # the tutorial's logging: compute (a host read), then reset
        metrics.reset()
        return loss

    result = {**timing.time_steps(run_steps, cfg.bench, m.batch_size), "os_threads": timing.os_threads()}
    if cfg.bench.profile:
        hlo = train_step.lower(model, optimizer, metrics, next(batches)).compile().as_text()
        result["profile"] = bench.profile_ops(run_steps, cfg.bench.window_steps, hlo)
    return result
