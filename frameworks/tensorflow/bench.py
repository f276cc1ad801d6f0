"""Steady-state training speed of the TensorFlow MNIST CNN (`compare.py --benchmark`).

The model, optimizer, step and data placement are mnist.py's own; the protocol and the
statistics are common.timing's. Only the synchronisation is TensorFlow's: a host read of
the last loss waits for every step before it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from common import timing
from common.config import RunConfig
from common.data import Mnist
from common.parallel import Engine
from frameworks.tensorflow import mnist, parallel, runtime

GPU_MATMUL_N = 8192


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    m = cfg.mnist
    gpu = device.startswith("gpu")
    model = mnist.create_model(m, init, device)
    optimizer = mnist.make_optimizer(m, model)
    x, y = mnist.to_device(data.train_images, data.train_labels, device)
    batches = timing.batches(len(data.train_labels), m.batch_size, cfg.seed)
    # --compile on: the same step compiled whole by XLA (jit_compile=True) instead of TensorFlow's graph executor
    step = tf.function(mnist.train_step.python_function, jit_compile=True) if m.compiled else mnist.train_step

    def run_steps(n: int) -> float:
        for _ in range(n):
            loss = step(model, optimizer, x, y, tf.constant(next(batches)))
        return float(loss.numpy())  # host read: waits for the steps before it

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    if cfg.bench.profile:
        result["profile"] = profile_ops(run_steps, cfg.bench.window_steps)
    if gpu:
        result["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        result["device_matmul_gflops"] = gpu_matmul_gflops(m.dtype)
    return result


def benchmark_parallel(cfg: RunConfig, engine: Engine, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    """parallel.py's data-parallel step on engine.devices devices, under the same protocol (--benchmark --devices).

    As parallel.train runs it: each step takes this replica's rows of the shared global batch.
    """
    m = cfg.mnist
    model, optimizer = parallel.create_model(engine, m, init, device)
    batches = timing.batches(len(data.train_labels), m.batch_size, cfg.seed)

    def run_steps(n: int) -> float:
        for _ in range(n):
            idx = next(batches)
            x, y = parallel.shard(engine, data.train_images[idx], data.train_labels[idx], device)
            loss = parallel.train_step(model, optimizer, x, y)
        return float(loss.numpy())  # host read: waits for every replica's step

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    return result


def profile_ops(run_steps: Callable[[int], float], steps: int) -> list[dict[str, Any]]:
    """Self time of each TensorFlow op over `steps` steps, from tf.profiler's framework_op_stats.

    The trace is read back with the converter TensorBoard's profile plugin uses (private, so
    guarded: a profile is an aside, never a reason for a benchmark to fail).
    """
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            run_steps(steps)
        finally:
            tf.profiler.experimental.stop()
        try:
            from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

            paths = [str(p) for p in Path(logdir).rglob("*.xplane.pb")]
            data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
            table = json.loads(data)[0] if ok else {"cols": [], "rows": []}
        except (ImportError, ValueError, IndexError, KeyError):
            return []
    ids = [c["id"] for c in table["cols"]]
    totals = {}
    for row in table["rows"]:
        cells = dict(zip(ids, [c.get("v") for c in row["c"]], strict=False))
        if cells.get("operation") not in (None, "IDLE") and cells.get("total_self_time") is not None:
            name = f"{cells['operation']} ({cells.get('type')})"
            totals[name] = (cells["total_self_time"] / 1e6, cells.get("occurrences") or 0)
    return timing.top_ops(totals, steps)


def gpu_matmul_gflops(dtype: str, n: int = GPU_MATMUL_N) -> float:
    """The framework's own large matmul on the GPU, in the run's dtype and numerics profile."""
    rng = np.random.default_rng(0)
    with tf.device("GPU:0"):
        a = tf.constant(rng.standard_normal((n, n)).astype(dtype))
        b = tf.constant(rng.standard_normal((n, n)).astype(dtype))
        matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))

        def run() -> None:
            matmul().numpy()  # the host read of one number waits for the multiply

        return timing.best_rate(run, timing.matmul_flop(n))
