"""The one timing protocol, its orchestration and its statistics for `compare.py --benchmark` (NumPy only).

Each framework times its training step with the same protocol, in `bench.py` (this project's
loop) and `textbook.py` (the framework's tutorial loop), through a `Stopwatch`:

1. time to the first finished step, tracing and compilation included;
2. `warmup_steps` more steps, untimed;
3. `windows` windows of `window_steps` steps each, timed one window at a time, each ended
   by a synchronisation that reads the loss (so the table can show that the loop learns).

A step loop that can be called n steps at a time uses `time_steps(run_steps, ...)`; a loop
that owns its own iteration (Keras `fit`) calls `lap` from a callback at the step counts of
`Stopwatch.marks`.

The cases are every combination of the benchmark's axes (BenchConfig: settings, loops,
batch sizes), run as one worker per framework and settings, the whole sequence `repeats`
times in alternating framework order. A row pools its windows over the repeats: the median
window gives the step time; the spread is the range of the repeats' medians (or, for one
repeat, the windows' interquartile range), so a noisy machine reads as overlapping spreads
rather than as a ranking. The machine's reference rate is an fp32 matrix multiply through
NumPy's BLAS, measured in compare's own process after each repeat (no worker beside it).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from common import launch, settings
from common.config import BenchConfig, RunConfig
from common.data import batch_order
from common.flops import train_flops_per_image
from common.io import atomic_write_json
from common.results import not_run
from common.table import markdown, summary_line, text

SCHEMA = "triptych/bench/2"
REFERENCE_N = 2048  # 2 * 2048^3 = 17.2 GFLOP per multiply: long enough to time, short enough to repeat
REFERENCE_REPEATS = 5
ROW_KEYS = (
    "framework",
    "settings",
    "loop",
    "batch_size",
    "status",
    "version",
    "device",
    "kernels",
    "threads",
    "repeats",
    "first_step_s",
    "step_ms",
    "step_ms_iqr",
    "images_per_second",
    "images_per_second_low",
    "images_per_second_high",
    "spread",
    "gflops",
    "fraction_of_reference",
    "peak_rss_mb",
)


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


PROFILE_TOP = 8


def top_ops(totals: dict[str, tuple[float, int]], steps: int, top: int = PROFILE_TOP) -> list[dict[str, Any]]:
    """A framework profiler's totals (seconds, calls per op) -> the `top` ops by time per step, with shares."""
    overall = sum(seconds for seconds, _ in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])[:top]
    return [
        {"op": name, "ms_per_step": 1e3 * s / steps, "share": s / overall, "calls_per_step": n / steps}
        for name, (s, n) in ranked
    ]


def load_average() -> float | None:
    """The 1-minute load average: how busy the machine was (our own worker included)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# --- Orchestration: which workers run, in which order -------------------------------------


def worker_settings(framework: str, names: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The settings to run for one framework, each with every name it stands for.

    Where a framework's "fastest" is its defaults (nothing measured faster), one worker
    stands for both: ('defaults', ('defaults', 'fastest')).
    """
    if not settings.FASTEST[framework].env:
        return [(names[0], names)]
    return [(name, (name,)) for name in names]


def run(cfg: RunConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every worker of the benchmark, `repeats` times; returns the runs and the reference rate.

    A worker is one process: one framework with one settings, running every batch size and loop
    of its job (frameworks/worker.py). An axis that needs its own process (another environment,
    a device count) is one more level of the `workers` list and one more field of the job.
    """
    order = [f for f in cfg.frameworks if not launch.missing_modules(f)]
    runs = [not_run(f, "skipped", not_installed(f)) for f in cfg.frameworks if f not in order]
    workers = [
        (repeat, framework, name, stands_for, devices)
        for repeat in range(cfg.bench.repeats)
        for framework in (order if repeat % 2 == 0 else order[::-1])  # alternate: no framework always goes first
        for name, stands_for in worker_settings(framework, cfg.bench.settings)
        for devices in cfg.bench.devices  # N > 1: the framework's engine, in processes of its own (torchrun)
    ]
    references = []
    for i, (repeat, framework, name, stands_for, devices) in enumerate(workers):
        one = replace(cfg, frameworks=(framework,), settings=name, parallel=replace(cfg.parallel, devices=devices))
        label = f"{framework}-{name}-{repeat + 1}" + (f"-{devices}dev" if len(cfg.bench.devices) > 1 else "")
        job = cfg.out_dir / "jobs" / f"{label}.json"
        atomic_write_json(job, one.to_dict())
        load = load_average()
        try:
            entry = launch.run_one(framework, one, job, name=label)
        except KeyboardInterrupt:
            raise interrupted(runs, workers[i:]) from None
        runs.append(
            {**entry, "settings": name, "stands_for": list(stands_for), "repeat": repeat + 1, "devices": devices}
            | {"load_before": load, "load_after": load_average()}
        )
        if not cfg.quiet:
            on = f", {devices} devices" if devices > 1 else ""
            line = f"{summary_line(runs[-1])} ({name} settings{on}, repeat {repeat + 1} of {cfg.bench.repeats})"
            print(line, file=sys.stderr, flush=True)
        if i + 1 == len(workers) or workers[i + 1][0] != repeat:
            try:
                references.append(numpy_reference())
            except KeyboardInterrupt:  # what finished is kept, as when a worker is stopped
                raise interrupted(runs, workers[i + 1 :]) from None
    return runs, reference_summary(references)


def interrupted(runs: list[dict[str, Any]], left: list[tuple]) -> launch.Interrupted:
    """Ctrl-C: the finished runs, and the workers not run marked `interrupted`."""
    stopped = [{**not_run(f, "interrupted", "stopped by Ctrl-C"), "settings": s} for _, f, s, _, _ in left]
    return launch.Interrupted([*runs, *stopped])


def not_installed(framework: str) -> str:
    missing = ", ".join(launch.missing_modules(framework))
    return f"{missing} not installed; install with: {launch.install_hint(framework)}"


def reference_summary(references: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of the per-repeat references (a busy moment only slows a multiply), and all of them."""
    if not references:
        return {"what": "none measured", "blas": blas_name(), "gflops": float("nan"), "samples": []}
    best = max(references, key=lambda r: r["gflops"])
    return {**best, "samples": [r["gflops"] for r in references]}


# --- Statistics: one row per framework, settings, loop and batch size ----------------------

# What each framework's textbook loop is (frameworks/<framework>/textbook.py), for the tables.
TEXTBOOKS = {"pytorch": "DataLoader", "tensorflow": "model.fit", "jax": "Flax tutorial"}

# The goals on the reference machine, checked by the benchmark (never by a timed test).
GOAL_OF_BLAS = 0.40  # each framework's training step reaches >= 40% of NumPy's fp32 matmul rate
GOAL_OF_FASTEST = 0.6  # the slowest framework runs at >= 0.6x the fastest
GOAL_VS_TEXTBOOK = 1.0  # this project's loop is no slower than the framework's textbook loop


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """bench.json: config, environment, the reference rate and one row per case, pooled over repeats."""
    cfg, reference = doc["config"], doc["reference"]
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    failed = []
    for r in doc["runs"]:
        if r["status"] != "ok":
            failed.append({k: r.get(k) for k in ("framework", "settings", "repeat", "status", "error")})
            continue
        for case in r.get("cases", []):
            key = (r["framework"], r["settings"], case["loop"], case["batch_size"], case.get("devices", 1))
            groups.setdefault(key, []).append((r, case))
    order = {f: i for i, f in enumerate(cfg["frameworks"])}
    rows = [row(members, reference["gflops"]) for members in groups.values()]
    rows.sort(key=lambda r: (r["batch_size"], order.get(r["framework"], 99), r["settings"], r["loop"], r["devices"]))
    compare_rows(rows)
    compare_devices(rows)
    loads = [x for r in doc["runs"] for x in (r.get("load_before"), r.get("load_after")) if x is not None]
    return {
        "schema": SCHEMA,
        "config": {
            "frameworks": cfg["frameworks"],
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
        "training_settings": settings.TRAINING,
        "fastest_settings": {f: settings.describe(f, "fastest") for f in cfg["frameworks"]},
        "load_average": {"min": min(loads), "max": max(loads)} if loads else None,
        "rows": rows,
        "failed": failed,
    }


def row(members: list[tuple[dict, dict]], reference_gflops: float) -> dict[str, Any]:
    """One case pooled over its repeats: median of every window, spread across repeats (or windows)."""
    run, case = members[0]
    batch = case["batch_size"]
    windows = np.concatenate([np.asarray(c["window_step_ms"], dtype=np.float64) for _, c in members]) / 1e3
    stats = step_statistics(windows, batch)
    cpu = [x for _, c in members for x in c.get("window_cpu_ms", [])]
    if len(members) > 1:
        per_repeat = [c["images_per_second"] for _, c in members]
        low, high, spread = min(per_repeat), max(per_repeat), f"range of {len(members)} repeats"
    else:
        q25, q75 = np.percentile(windows, [25, 75])
        low, high, spread = batch / q75, batch / q25, f"IQR of {len(windows)} windows"
    out = {
        "framework": run["framework"],
        "settings": run["settings"],
        "stands_for": run.get("stands_for", [run["settings"]]),
        "loop": case["loop"],
        "batch_size": batch,
        "devices": case.get("devices", 1),
        "status": "ok",
        "version": run.get("version"),
        "device": run.get("device"),
        "kernels": (run.get("kernels") or {}).get("library", "unknown"),
        "threads": (run.get("kernels") or {}).get("threads", case.get("threads")),
        "repeats": len(members),
        "first_step_s": float(np.median([c["first_step_s"] for _, c in members])),
        **{k: stats[k] for k in ("step_ms", "step_ms_iqr", "images_per_second", "gflops")},
        "images_per_second_low": float(low),
        "images_per_second_high": float(high),
        "spread": spread,
        "fraction_of_reference": stats["gflops"] / reference_gflops,
        "cpu_step_ms": float(np.median(cpu)) if cpu else None,
        "peak_rss_mb": max(c.get("peak_rss_mb") or 0.0 for _, c in members),
        "window_step_ms": [float(1e3 * s) for s in windows],
        "losses": case.get("losses"),
    }
    if case.get("profile"):  # --profile: the first repeat's
        out["profile"] = case["profile"]
    for key in ("os_threads", "peak_gpu_mb", "device_matmul_gflops", "engine", "processes", "per_replica_batch"):
        if case.get(key) is not None:
            out[key] = case[key]
    if case.get("device_matmul_gflops"):
        out["fraction_of_device_matmul"] = stats["gflops"] / case["device_matmul_gflops"]
    return out


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two rows' spreads overlap: then this run does not tell them apart."""
    return (
        a["images_per_second_low"] <= b["images_per_second_high"]
        and b["images_per_second_low"] <= a["images_per_second_high"]
    )


def compare_rows(rows: list[dict[str, Any]]) -> None:
    """Each row against the fastest project loop at its batch size and device count, and against its textbook."""
    for batch, devices in {(r["batch_size"], r["devices"]) for r in rows}:
        same = [r for r in rows if r["batch_size"] == batch and r["devices"] == devices]
        project = [r for r in same if r["loop"] == "project"] or same
        fastest = max(project, key=lambda r: r["images_per_second"])
        for r in same:
            r["relative_to_fastest"] = r["images_per_second"] / fastest["images_per_second"]
            r["overlaps_fastest"] = r is not fastest and overlap(r, fastest)
        for r in project:
            bar = [t for t in same if t["loop"] == "textbook" and t["framework"] == r["framework"]]
            bar = [t for t in bar if t["settings"] == r["settings"]]
            if bar:
                r["relative_to_textbook"] = r["images_per_second"] / bar[0]["images_per_second"]
                r["overlaps_textbook"] = overlap(r, bar[0])


def compare_devices(rows: list[dict[str, Any]]) -> None:
    """A data-parallel row against the same case on one device.

    `relative_to_one_device` is images/s on N devices over images/s on one. On a CPU the N
    devices are simulated and share its cores, at the same total threads, so 1.00x means no
    data-parallel overhead and nothing can scale; on N GPUs `scaling_efficiency` divides by N too.
    """
    one = {(r["framework"], r["settings"], r["loop"], r["batch_size"]): r for r in rows if r["devices"] == 1}
    for r in rows:
        base = one.get((r["framework"], r["settings"], r["loop"], r["batch_size"]))
        if r["devices"] > 1 and base:
            r["relative_to_one_device"] = r["images_per_second"] / base["images_per_second"]
            r["scaling_efficiency"] = r["relative_to_one_device"] / r["devices"]
            r["overlaps_one_device"] = overlap(r, base)


def on_gpus(bench: dict[str, Any]) -> bool:
    return any(not str(r.get("device") or "cpu").startswith("cpu") for r in bench["rows"])


def ratio(value: float | None, overlapping: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" + (" ~" if overlapping else "")


def loop_label(r: dict[str, Any]) -> str:
    """'project', or 'textbook (model.fit)': which loop a row timed."""
    if r["loop"] != "textbook":
        return r["loop"]
    return f"textbook ({TEXTBOOKS[r['framework']]})" if r["framework"] in TEXTBOOKS else "textbook"


def settings_label(r: dict[str, Any]) -> str:
    names = " = ".join(r.get("stands_for") or [r["settings"]])
    return names + (" *" if settings.TRAINING in (r.get("stands_for") or [r["settings"]]) else "")


def table_rows(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The table's columns and cells, shared by the terminal and the Markdown versions.

    Columns that would be empty in every row (textbook comparison, GPU memory) are left out.
    """
    rows = bench["rows"]
    # Simulated CPU devices share the cores: their ratio to one device is the overhead, not a scaling.
    one_device_key = "scaling_efficiency" if on_gpus(bench) else "relative_to_one_device"
    cells: dict[str, Callable[[dict[str, Any]], str]] = {
        "framework": lambda r: r["framework"],
        "settings": settings_label,
        "loop": loop_label,
        "batch": lambda r: str(r["batch_size"]),
        "devices": lambda r: str(r["devices"]),
        "kernels": lambda r: r["kernels"],
        "threads": lambda r: f"{r['threads']} x {r['processes']}" if r.get("processes", 1) > 1 else str(r["threads"]),
        "first step s": lambda r: f"{r['first_step_s']:.2f}",
        "images/s": lambda r: f"{r['images_per_second']:,.0f}",
        "per device": lambda r: f"{r['images_per_second'] / r['devices']:,.0f}",
        "vs 1 device": lambda r: ratio(r.get(one_device_key), r.get("overlaps_one_device", False)),
        "spread": lambda r: f"{r['images_per_second_low']:,.0f}-{r['images_per_second_high']:,.0f}",
        "CPU ms/step": lambda r: f"{r['cpu_step_ms']:.1f}" if r.get("cpu_step_ms") is not None else "-",
        "of CPU BLAS": lambda r: f"{100 * r['fraction_of_reference']:.0f}%",
        "of fastest": lambda r: ratio(r.get("relative_to_fastest"), r.get("overlaps_fastest", False)),
        "vs textbook": lambda r: ratio(r.get("relative_to_textbook"), r.get("overlaps_textbook", False)),
        "peak RSS MB": lambda r: f"{r['peak_rss_mb']:,.0f}" if r.get("peak_rss_mb") else "-",
        "GPU MB": lambda r: f"{r['peak_gpu_mb']:,.0f}" if "peak_gpu_mb" in r else "-",
        "of GPU matmul": lambda r: (
            f"{100 * r['fraction_of_device_matmul']:.1f}%" if "fraction_of_device_matmul" in r else "-"
        ),
    }
    several = len({r["devices"] for r in rows}) > 1
    shown = {
        "devices": several,
        "per device": several,
        "vs 1 device": several,
        "vs textbook": any("relative_to_textbook" in r for r in rows),
        "GPU MB": any("peak_gpu_mb" in r for r in rows),
        "of GPU matmul": any("fraction_of_device_matmul" in r for r in rows),
    }
    columns = tuple(c for c in cells if shown.get(c, True))
    lines = [[cells[c](r) for c in columns] for r in rows]
    for f in bench.get("failed", []):
        lines.append([f["framework"], f.get("settings") or "-", f"{f['status']}: {f.get('error', '')}"])
    return columns, lines


def headline(bench: dict[str, Any]) -> str:
    cfg = bench["config"]
    b = cfg["bench"]
    repeats = f"{b['repeats']} repeats in alternating framework order" if b["repeats"] > 1 else "1 repeat"
    return (
        f"MNIST CNN training step, {cfg['dtype']}, {cfg['optimizer']}: {b['warmup_steps']} warm-up steps, then "
        f"{b['windows']} windows x {b['window_steps']} steps per case, {repeats}; {cfg['profile']} GPU profile"
    )


def notes(bench: dict[str, Any]) -> list[str]:
    """What the table's marks mean, what the settings were, and the machine and its load."""
    env, ref = bench["environment"], bench["reference"]
    fastest = "; ".join(f"{f}: {d}" for f, d in bench["fastest_settings"].items())
    load = bench.get("load_average")
    cpu = f"{env.get('cpu')} ({' '.join(env.get('vector_extensions') or []) or 'extensions unknown'})"
    lines = [
        "images/s: median of every window (all repeats); spread: range of the repeats' medians, or the windows'"
        " IQR for one repeat; ~: its spread overlaps the one it is compared with, so this run does not tell them"
        " apart",
        "CPU ms/step: CPU time of the worker per step, all its threads (median window): the work done, which a"
        " busy machine stretches far less than wall time",
        f"of fastest: against the fastest project loop at that batch size; vs textbook: against the same"
        f" framework's textbook loop; *: the settings training runs use ({bench['training_settings']})",
        f"fastest settings: {fastest}",
        f"reference: {ref['what']} ({ref['blas']}) = {ref['gflops']:.1f} GFLOP/s"
        + (f" (best of {len(ref['samples'])} repeats)" if len(ref.get("samples", [])) > 1 else ""),
        f"machine: {cpu}, {env.get('cores')} cores"
        + (f"; 1-minute load average {load['min']:.1f}-{load['max']:.1f} during the run" if load else ""),
    ]
    if len({r["devices"] for r in bench["rows"]}) > 1:
        lines.append(devices_note(bench))
    return lines


def devices_note(bench: dict[str, Any]) -> str:
    if on_gpus(bench):
        return (
            "devices: each engine's single-machine form on N GPUs; vs 1 device: the scaling efficiency, images/s on"
            " N devices over N x images/s on one (1.00x: perfect scaling)"
        )
    cores = bench["environment"].get("cores")
    return (
        f"devices: simulated on this CPU, sharing its {cores} cores at the same total threads (PyTorch: one thread"
        " per replica process; TensorFlow and JAX: one pool for all replicas), so nothing can scale; vs 1 device:"
        " images/s on N devices over images/s on one, the data-parallel overhead (1.00x: none); threads 1 x 2: one"
        " thread in each of two processes, whose CPU time is not summed (CPU ms/step '-')"
    )


def goals(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The speed goals, per batch size, for the project loop in the settings training runs use."""
    lines = []
    for batch in sorted({r["batch_size"] for r in bench["rows"]}):
        used = [
            r
            for r in bench["rows"]
            if r["batch_size"] == batch
            and r["loop"] == "project"
            and r["devices"] == 1  # the goals are about one device
            and bench["training_settings"] in r["stands_for"]
        ]
        if not used:
            continue
        for r in used:
            blas = r["fraction_of_reference"]
            lines.append(
                [
                    str(batch),
                    f"{r['framework']} >= {GOAL_OF_BLAS:.0%} of CPU BLAS",
                    f"{blas:.0%}",
                    yes(blas >= GOAL_OF_BLAS),
                ]
            )
        slowest, fastest = min(used, key=rate), max(used, key=rate)
        share = rate(slowest) / rate(fastest)
        lines.append(
            [
                str(batch),
                f"slowest >= {GOAL_OF_FASTEST}x fastest",
                f"{slowest['framework']} {share:.2f}x",
                yes(share >= GOAL_OF_FASTEST, overlap(slowest, fastest)),
            ]
        )
        for r in used:
            if "relative_to_textbook" in r:
                value = r["relative_to_textbook"]
                met = yes(value >= GOAL_VS_TEXTBOOK, r["overlaps_textbook"])
                lines.append(
                    [str(batch), f"{r['framework']} >= {GOAL_VS_TEXTBOOK}x its textbook loop", f"{value:.2f}x", met]
                )
    return ("batch", "goal", "this run", "met"), lines


def rate(r: dict[str, Any]) -> float:
    return r["images_per_second"]


def yes(met: bool, within_noise: bool = False) -> str:
    return ("yes" if met else "no") + (" (within noise)" if within_noise and not met else "")


PROFILE_TITLE = (
    "Where the time goes (--profile): each loop under its framework's own profiler for one more window;"
    " ms per step of each op (PyTorch: self time on the calling thread; TensorFlow: op self time; JAX: XLA"
    " thunks, summed over its threads), share of all the profiled time"
)


def profile_rows(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    lines = []
    for r in bench["rows"]:
        head = [r["framework"], settings_label(r), loop_label(r), str(r["batch_size"])]
        for op in r.get("profile") or []:
            lines.append([*head, op["op"][:90], f"{op['ms_per_step']:.2f}", f"{100 * op['share']:.0f}%"])
    return ("framework", "settings", "loop", "batch", "op", "ms/step", "share"), lines


def table(bench: dict[str, Any]) -> str:
    """The terminal report compare.py prints after a benchmark."""
    parts = [headline(bench), "", text(*table_rows(bench)), "", *notes(bench)]
    goal_columns, goal_rows = goals(bench)
    if goal_rows:
        parts += ["", "Goals (training settings, this project's loop)", text(goal_columns, goal_rows)]
    columns, lines = profile_rows(bench)
    if lines:
        parts += ["", PROFILE_TITLE, text(columns, lines)]
    return "\n".join(parts)


def markdown_report(bench: dict[str, Any]) -> str:
    """The same as Markdown, for report.md, README and docs/performance.md."""
    parts = [headline(bench), markdown(*table_rows(bench)), "\n".join(f"- {line}" for line in notes(bench))]
    goal_columns, goal_rows = goals(bench)
    if goal_rows:
        parts += ["Goals (training settings, this project's loop):", markdown(goal_columns, goal_rows)]
    columns, lines = profile_rows(bench)
    if lines:
        parts += [PROFILE_TITLE + ":", markdown(columns, lines)]
    return "\n\n".join(parts)
