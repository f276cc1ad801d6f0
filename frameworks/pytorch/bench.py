"""Steady-state training speed of the PyTorch MNIST CNN (`compare.py --benchmark`).

The model, optimizer, step and data placement are mnist.py's own; the protocol and the
statistics are common.timing's. Only the synchronisation is PyTorch's: a host read of
the last loss waits for every queued step, on a CPU or a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from common import timing
from common.config import RunConfig
from common.data import Mnist
from common.parallel import Engine
from frameworks.pytorch import mnist, parallel, runtime
from frameworks.pytorch.runtime import torch_device

GPU_MATMUL_N = 8192


def benchmark(cfg: RunConfig, init: dict, data: Mnist, device: str) -> dict[str, Any]:
    m = cfg.mnist
    gpu = torch_device(device).type == "cuda"
    model = mnist.create_model(m, init, device)
    optimizer = mnist.make_optimizer(m, model)
    x, y = mnist.to_device(data.train_images, data.train_labels, device)
    batches = timing.batches(len(data.train_labels), m.batch_size, cfg.seed)
    # --compile on: torch.compile's default mode (Inductor) over the whole step: forward, backward, optimizer
    step = torch.compile(mnist.train_step) if m.compiled else mnist.train_step

    def run_steps(n: int) -> float:
        for _ in range(n):
            loss = step(model, optimizer, x, y, torch.as_tensor(next(batches), device=x.device))
        return loss.item()  # host read: waits for the queued steps

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    if cfg.bench.profile:
        result["profile"] = profile_ops(run_steps, cfg.bench.window_steps)
    if gpu:
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device_matmul_gflops"] = gpu_matmul_gflops(getattr(torch, m.dtype))
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
        return loss.item()  # host read: waits for the queued steps and their all-reduces

    result = timing.time_steps(run_steps, cfg.bench, m.batch_size)
    result.update(threads=runtime.threads(), os_threads=timing.os_threads())
    return result


def profile_ops(run_steps: Callable[[int], float], steps: int) -> list[dict[str, Any]]:
    """Self time of each ATen op over `steps` steps, from torch.profiler (the calling thread's view)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_steps(steps)
    totals = {e.key: (e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()}
    return timing.top_ops(totals, steps)


def gpu_matmul_gflops(dtype: torch.dtype, n: int = GPU_MATMUL_N) -> float:
    """The framework's own large matmul on the GPU, in the run's dtype and numerics profile."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)

    def run() -> None:
        torch.matmul(a, b)
        torch.cuda.synchronize()

    return timing.best_rate(run, timing.matmul_flop(n))
