"""The one timing protocol every framework's training step is timed with (NumPy only).

Each framework times its training step with the same protocol, in `bench.py` (this project's
loop) and `textbook.py` (the framework's tutorial loop), through a `Stopwatch`:

1. time to the first finished step, tracing and compilation included;
2. `warmup_steps` more steps, untimed;
3. `windows` windows of `window_steps` steps each, timed one window at a time, each ended
   by a synchronisation that reads the loss (so the table can show that the loop learns).

A step loop that can be called n steps at a time uses `time_steps(run_steps, ...)`; a loop
that owns its own iteration (Keras `fit`) calls `lap` from a callback at the step counts of
`Stopwatch.marks`. The frameworks' workers import this module, so it holds the protocol and
its per-window statistics only; which workers run, and how their windows are pooled and shown,
is the driver's (common/bench/).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from common.config import BenchConfig
from common.data import batch_order
from common.flops import train_flops_per_image

REFERENCE_REPEATS = 5


def batches(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """The shared batch order, epoch after epoch, as the training loop sees it."""
    for epoch in itertools.count():
        yield from batch_order(n, batch_size, seed, epoch)


class Stopwatch:
    """The protocol as laps: `start()` before the first step, `lap(loss)` after each count in `marks`."""

    def __init__(self, bench: BenchConfig, batch_size: int) -> None:
        if bench.windows < 1 or bench.window_steps < 1:
            raise ValueError("a benchmark needs at least one window of at least one step")
        self.bench = bench
        self.batch_size = batch_size
        self.marks = marks(bench)
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.losses: list[float | None] = []
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def lap(self, loss: float | None) -> None:
        """Call after a synchronisation: the steps so far have finished and `loss` is their last."""
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.losses.append(None if loss is None else float(loss))

    def result(self) -> dict[str, Any]:
        if len(self.times) != len(self.marks):
            raise RuntimeError(f"the loop stopped after {len(self.times)} of {len(self.marks)} timing marks")
        n = self.bench.windows + 1
        windows = np.diff(self.times[-n:]) / self.bench.window_steps
        # CPU seconds of this process per step (all its threads): the work done, which a busy
        # machine stretches far less than wall time (a spinning thread pool counts as work).
        cpu = np.diff(self.cpu[-n:]) / self.bench.window_steps
        return {
            "first_step_s": self.times[0] - self.started,
            **step_statistics(windows, self.batch_size),
            "window_cpu_ms": [1e3 * float(c) for c in cpu],
            "losses": self.losses,  # after the first step, the warm-up and each window
        }


def marks(bench: BenchConfig) -> list[int]:
    """Step counts at which the clock is read: 1, end of warm-up, end of each window."""
    counts = [1] + ([1 + bench.warmup_steps] if bench.warmup_steps else [])
    return counts + [counts[-1] + bench.window_steps * (i + 1) for i in range(bench.windows)]


def total_steps(bench: BenchConfig) -> int:
    return marks(bench)[-1]


def time_steps(run_steps: Callable[[int], float | None], bench: BenchConfig, batch_size: int) -> dict[str, Any]:
    """Run the protocol on `run_steps(n)`, which runs n steps, waits for them and returns the last loss."""
    watch = Stopwatch(bench, batch_size)
    watch.start()
    done = 0
    for mark in watch.marks:
        loss = run_steps(mark - done)
        watch.lap(loss)
        done = mark
    return watch.result()


def step_statistics(step_seconds: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Median and IQR of per-window step times, and the rates the median implies."""
    median = float(np.median(step_seconds))
    q25, q75 = np.percentile(step_seconds, [25, 75])
    images = batch_size / median
    return {
        "batch_size": batch_size,
        "step_ms": 1e3 * median,
        "step_ms_iqr": 1e3 * float(q75 - q25),
        "window_step_ms": [1e3 * float(s) for s in step_seconds],
        "images_per_second": images,
        "gflops": images * train_flops_per_image() / 1e9,
    }


def best_rate(run: Callable[[], None], flop: float, repeats: int = REFERENCE_REPEATS) -> float:
    """GFLOP/s of the fastest of `repeats` timed calls of `run` (after one untimed call).

    `run` must finish its work before returning (synchronise on a GPU). The best, not the
    median, because a shared machine only ever slows a multiply down.
    """
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flop / best / 1e9


def matmul_flop(n: int) -> float:
    return 2.0 * n**3


def os_threads() -> int:
    """Threads of this process right now (Linux), whatever created them."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


PROFILE_TOP = 8


def top_ops(totals: dict[str, tuple[float, int]], steps: int, top: int = PROFILE_TOP) -> list[dict[str, Any]]:
    """A framework profiler's totals (seconds, calls per op) -> the `top` ops by time per step, with shares."""
    overall = sum(seconds for seconds, _ in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
    return [
        {"op": name, "ms_per_step": 1e3 * s / steps, "share": s / overall, "calls_per_step": n / steps}
        for name, (s, n) in ranked
    ]
