"""Keras's textbook training, `model.compile` + `model.fit`, timed as the benchmark's bar.

As the Keras examples train (keras.io, "Simple MNIST convnet"): `compile` with the optimizer,
a sparse categorical cross-entropy and an accuracy metric, then `fit(x, y, batch_size, epochs)`
on NumPy arrays, which Keras turns into a shuffled tf.data pipeline feeding a tf.function step
of its own (no XLA on a CPU-only machine: Keras's jit_compile="auto" turns it off there). What
is this project's: the Net (a subclassed keras.Model), its shared initial weights and the
optimizer (mnist.py); verbose=0 instead of the progress bar; and a callback that reads the
clock at the protocol's step counts and stops `fit` after the last one.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from common import timing
from common.config import RunConfig
from common.data import Mnist
from frameworks.tensorflow import bench, mnist


class Laps(tf.keras.callbacks.Callback):
    """Reads the loss and the clock at the protocol's step counts; stops `fit` after the last.

    A callback with a batch hook makes Keras call it after every step with the step's logs read
    to the host, as its progress bar does; on a CPU a step has finished by then anyway.
    """

    def __init__(self, watch: timing.Stopwatch) -> None:
        super().__init__()
        self.watch = watch
        self.steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps += 1
        if self.steps in self.watch.marks:
            self.watch.lap((logs or {}).get("loss"))
        if self.steps == self.watch.marks[-1]:
            self.model.stop_training = True


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    """`fit` under common.timing's protocol; the same signature as bench.benchmark."""
    m = cfg.mnist
    model = mnist.create_model(m, init, device)
    model.compile(
        optimizer=mnist.make_optimizer(m, model),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    watch = timing.Stopwatch(cfg.bench, m.batch_size)
    epochs = math.ceil(timing.total_steps(cfg.bench) / (len(data.train_labels) // m.batch_size))
    watch.start()
    x = data.train_images[..., None]  # NHWC: the channel axis comes last
    model.fit(x, data.train_labels, batch_size=m.batch_size, epochs=epochs, verbose=0, callbacks=[Laps(watch)])
    result = {**watch.result(), "os_threads": timing.os_threads()}
    if cfg.bench.profile:

        def run_steps(n: int) -> float:  # one more fit, of n steps, under the profiler
            size = n * m.batch_size
            history = model.fit(x[:size], data.train_labels[:size], batch_size=m.batch_size, verbose=0)
            return history.history["loss"][-1]

        result["profile"] = bench.profile_ops(run_steps, cfg.bench.window_steps)
    return result
