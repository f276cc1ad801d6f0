"""The one timing protocol and its statistics for `compare.py --benchmark` (NumPy only).

Each framework's bench.py builds its model with its own mnist.py and hands `time_steps` a
`run_steps(n)` that runs n training steps and waits for them to finish (a host read of the
loss, `block_until_ready`, `torch.cuda.synchronize`). The protocol is the same for all three:

1. time to the first finished step, tracing and compilation included;
2. `warmup_steps` more steps, untimed;
3. `windows` windows of `window_steps` steps each, timed one window at a time.

The median window gives the step time, its IQR the spread; images/s and GFLOP/s follow from
the batch size and common.flops. The machine's reference rate is an fp32 matrix multiply
through NumPy's BLAS, measured in compare's own process (no worker running beside it), and
on a GPU each framework adds its own large fp32 matmul.
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
from common.table import text

SCHEMA = "triptych/bench/1"
REFERENCE_N = 2048  # 2 * 2048^3 = 17.2 GFLOP per multiply: long enough to time, short enough to repeat
REFERENCE_REPEATS = 5
ROW_KEYS = (
    "framework",
    "status",
    "version",
    "device",
    "threads",
    "batch_size",
    "first_step_s",
    "step_ms",
    "step_ms_iqr",
    "images_per_second",
    "gflops",
    "fraction_of_reference",
    "peak_rss_mb",
)


def batches(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """The shared batch order, epoch after epoch, as the training loop sees it."""
    for epoch in itertools.count():
        yield from batch_order(n, batch_size, seed, epoch)


def time_steps(run_steps: Callable[[int], None], bench: BenchConfig, batch_size: int) -> dict[str, Any]:
    """Run the protocol on `run_steps` and return the timing numbers of one framework."""
    if bench.windows < 1 or bench.window_steps < 1:
        raise ValueError("a benchmark needs at least one window of at least one step")
    start = time.perf_counter()
    run_steps(1)
    first = time.perf_counter() - start
    if bench.warmup_steps:
        run_steps(bench.warmup_steps)
    windows = []
    for _ in range(bench.windows):
        start = time.perf_counter()
        run_steps(bench.window_steps)
        windows.append((time.perf_counter() - start) / bench.window_steps)
    return {"first_step_s": first, **step_statistics(np.array(windows), batch_size)}


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


def numpy_reference(n: int = REFERENCE_N) -> dict[str, Any]:
    """fp32 n x n matrix multiply through NumPy's BLAS: the machine's reference rate."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    gflops = best_rate(lambda: np.matmul(a, b, out=out), matmul_flop(n))
    return {"what": f"NumPy fp32 {n}x{n} matmul, best of {REFERENCE_REPEATS}", "blas": blas_name(), "gflops": gflops}


def blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # the name is only a label: never fail a benchmark over it
        return "unknown"


def os_threads() -> int:
    """Threads of this process right now (Linux), whatever created them."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def summarise(doc: dict[str, Any], reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """bench.json: config, environment, the reference rate and one row per framework."""
    reference = reference or numpy_reference()
    cfg = doc["config"]
    rows = [row(run, reference["gflops"]) for run in doc["runs"]]
    fastest = max((r["images_per_second"] for r in rows if r["status"] == "ok"), default=None)
    for r in rows:
        if r["status"] == "ok" and fastest:
            r["relative_to_fastest"] = r["images_per_second"] / fastest
    return {
        "schema": SCHEMA,
        "config": {
            "batch_size": cfg["mnist"]["batch_size"],
            "dtype": cfg["mnist"]["dtype"],
            "optimizer": cfg["mnist"]["optimizer"],
            "train_limit": cfg["mnist"]["train_limit"],
            "device": cfg["device"],
            "profile": "fast" if cfg.get("fast") else "strict",
            "threads": cfg["threads"],
            "seed": cfg["seed"],
            "bench": cfg["bench"],
        },
        "environment": doc["environment"],
        "train_flops_per_image": train_flops_per_image(),
        "reference": reference,
        "frameworks": rows,
    }


def row(run: dict[str, Any], reference_gflops: float) -> dict[str, Any]:
    """One framework's bench.json row; a framework that did not run keeps its error."""
    head = {k: run.get(k) for k in ("framework", "status", "version", "device")}
    if run["status"] != "ok":
        return {**head, "error": run.get("error", "")}
    out = {**head, **{k: run[k] for k in ROW_KEYS if k in run and k not in head}}
    out["fraction_of_reference"] = run["gflops"] / reference_gflops
    out["peak_rss_mb"] = run.get("peak_rss_mb")
    for key in ("os_threads", "window_step_ms", "peak_gpu_mb", "device_matmul_gflops"):
        if run.get(key) is not None:
            out[key] = run[key]
    if run.get("device_matmul_gflops"):
        out["fraction_of_device_matmul"] = run["gflops"] / run["device_matmul_gflops"]
    return out


def table(bench: dict[str, Any]) -> str:
    """The terminal table compare.py prints after a benchmark."""
    cfg, ref = bench["config"], bench["reference"]
    gpu = any("peak_gpu_mb" in r for r in bench["frameworks"])
    columns = ["framework", "device", "threads", "first step s", "step ms (IQR)", "images/s", "GFLOP/s", "of CPU BLAS"]
    columns += ["of fastest", "peak RSS MB"] + (["GPU MB", "of GPU matmul"] if gpu else [])
    lines = []
    for r in bench["frameworks"]:
        if r["status"] != "ok":
            lines.append([r["framework"], r.get("device") or "-", f"{r['status']}: {r.get('error', '')}"])
            continue
        cells = [
            r["framework"],
            r["device"],
            str(r["threads"]),
            f"{r['first_step_s']:.2f}",
            f"{r['step_ms']:.2f} ({r['step_ms_iqr']:.2f})",
            f"{r['images_per_second']:,.0f}",
            f"{r['gflops']:.1f}",
            f"{100 * r['fraction_of_reference']:.1f}%",
            f"{r.get('relative_to_fastest', 0):.2f}x",
            f"{r['peak_rss_mb']:,.0f}" if r.get("peak_rss_mb") else "-",
        ]
        if gpu:
            cells += [
                f"{r['peak_gpu_mb']:,.0f}" if "peak_gpu_mb" in r else "-",
                f"{100 * r['fraction_of_device_matmul']:.1f}%" if "fraction_of_device_matmul" in r else "-",
            ]
        lines.append(cells)
    b = cfg["bench"]
    head = (
        f"MNIST CNN training step, batch {cfg['batch_size']}, {cfg['dtype']}, {cfg['optimizer']}: "
        f"{b['warmup_steps']} warm-up steps, then median of {b['windows']} windows x {b['window_steps']} steps, "
        f"{cfg['profile']} profile"
    )
    foot = f"reference: {ref['what']} ({ref['blas']}) = {ref['gflops']:.1f} GFLOP/s"
    return "\n".join([head, "", text(tuple(columns), lines), "", foot])
