"""Steady-state training speed of the TensorFlow MNIST CNN (`compare.py --benchmark`).

The model, optimizer, step and data placement are mnist.py's own; the protocol and the
statistics are common.benchmark's. Only the synchronisation is TensorFlow's: a host read of
the last loss waits for every step before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from common import benchmark as bm
from common.config import RunConfig
from common.data import Mnist
from common.environment import usable_cores
from frameworks.tensorflow import mnist

GPU_MATMUL_N = 8192


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    m = cfg.mnist
    gpu = device.startswith("gpu")
    model = mnist.create_model(m, init, device)
    optimizer = mnist.make_optimizer(m, model)
    x, y = mnist.to_device(data.train_images, data.train_labels, device)
    batches = bm.batches(len(data.train_labels), m.batch_size, cfg.seed)

    def run_steps(n: int) -> float:
        for _ in range(n):
            loss = mnist.train_step(model, optimizer, x, y, tf.constant(next(batches)))
        return float(loss.numpy())  # host read: waits for the steps before it

    result = bm.time_steps(run_steps, cfg.bench, m.batch_size)
    # 0 means "TensorFlow's default": one intra-op thread per core.
    threads = tf.config.threading.get_intra_op_parallelism_threads() or usable_cores()
    result.update(threads=threads, os_threads=bm.os_threads())
    if gpu:
        result["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        result["device_matmul_gflops"] = gpu_matmul_gflops(m.dtype)
    return result


def gpu_matmul_gflops(dtype: str, n: int = GPU_MATMUL_N) -> float:
    """The framework's own large matmul on the GPU, in the run's dtype and numerics profile."""
    rng = np.random.default_rng(0)
    with tf.device("GPU:0"):
        a = tf.constant(rng.standard_normal((n, n)).astype(dtype))
        b = tf.constant(rng.standard_normal((n, n)).astype(dtype))
        matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))

        def run() -> None:
            matmul().numpy()  # the host read of one number waits for the multiply

        return bm.best_rate(run, bm.matmul_flop(n))
