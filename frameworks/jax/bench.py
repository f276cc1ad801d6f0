"""Steady-state training speed of the JAX MNIST CNN (`compare.py --benchmark`).

The model, optimizer, step and data placement are mnist.py's own; the protocol and the
statistics are common.timing's. Only the synchronisation is JAX's: a host read of the
last loss waits for every step dispatched before it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from common import hlo as hlo_text
from common import timing
from common.config import RunConfig
from common.data import Mnist
from common.parallel import Engine
from frameworks.jax import mnist, parallel, runtime

GPU_MATMUL_N = 8192


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    m = cfg.mnist
    gpu = device.startswith("gpu")
    model = mnist.create_model(m, init, device)
    optimizer = mnist.make_optimizer(m, model)
    x, y = mnist.to_device(data.train_images, data.train_labels, device)
    batches = timing.batches(len(data.train_labels), m.batch_size, cfg.seed)
    # --compile on or off: JAX's step is always compiled whole by XLA (jax.jit), so one worker stands for both
    step = mnist.train_step

    def run_steps(n: int) -> float:
        for _ in range(n):
            loss = step(model, optimizer, x, y, jnp.asarray(next(batches)))
        return float(loss)  # host read: waits for every step dispatched before it

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    if cfg.bench.profile:
        # The compiled step's HLO (a cache hit) names what each fusion in the trace computes.
        hlo = mnist.train_step.lower(model, optimizer, x, y, jnp.asarray(next(batches))).compile().as_text()
        result["profile"] = profile_ops(run_steps, cfg.bench.window_steps, hlo)
    if gpu:
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            result["peak_gpu_mb"] = stats["peak_bytes_in_use"] / 2**20
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
        # JAX: with --processes the loss spans other processes' devices; read this process's copy
        return float(loss.addressable_data(0))  # host read: waits for the step

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    return result


def profile_ops(run_steps: Callable[[int], float], steps: int, hlo: str = "") -> list[dict[str, Any]]:
    """Time of each compiled operation (XLA thunk) over `steps` steps, from jax.profiler's trace.

    A thunk runs on one of XLA's threads, so the times add up across threads; each fusion is
    named by the operation its HLO metadata records (e.g. transpose(jvp())/conv_general_dilated:
    a convolution of the backward pass).
    """
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir):
            run_steps(steps)
        data = jax.profiler.ProfileData.from_file(str(next(Path(logdir).rglob("*.xplane.pb"))))
    names = hlo_text.fusion_names(hlo)
    totals: dict[str, tuple[float, int]] = {}
    for xplane in data.planes:  # the profiler's "planes": one per device or host
        for line in xplane.lines:
            if not line.name.startswith("tf_XLA"):  # XLA's CPU threads, not Python's
                continue
            for event in line.events:
                if event.name.startswith("ThunkExecutor"):  # the wrapper around the thunks
                    continue
                name = f"{event.name} ({names[event.name]})" if event.name in names else event.name
                seconds, count = totals.get(name, (0.0, 0))
                totals[name] = (seconds + event.duration_ns / 1e9, count + 1)
    return timing.top_ops(totals, steps)


def gpu_matmul_gflops(dtype: str, n: int = GPU_MATMUL_N) -> float:
    """The framework's own large matmul on the GPU, in the run's dtype and numerics profile."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), dtype=dtype)
    b = jax.random.normal(kb, (n, n), dtype=dtype)
    matmul = jax.jit(jnp.matmul)
    return timing.best_rate(lambda: matmul(a, b).block_until_ready(), timing.matmul_flop(n))
