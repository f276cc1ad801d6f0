"""Which workers the benchmark runs, in which order, and the machine's reference rate.

The cases are every combination of the benchmark's axes (BenchConfig: settings, loops,
batch sizes, device counts), run as one worker per framework and settings, the whole sequence
`repeats` times in alternating framework order. The machine's reference rate is an fp32 matrix
multiply through NumPy's BLAS, measured in compare's own process after each repeat (no worker
beside it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from common import settings
from common.config import RunConfig
from common.io import atomic_write_json
from common.results import not_run
from common.run import launch
from common.table import summary_line
from common.timing import REFERENCE_REPEATS, best_rate, matmul_flop

REFERENCE_N = 2048  # 2 * 2048^3 = 17.2 GFLOP per multiply: long enough to time, short enough to repeat


def worker_settings(
    framework: str, names: tuple[str, ...], same_here: bool = False
) -> list[tuple[str, tuple[str, ...]]]:
    """The settings to run for one framework, each with every name it stands for.

    Where a framework's "fastest" is its defaults (it sets nothing, or `same_here`: it changes
    nothing on this machine, see same_as_defaults), one worker stands for both:
    ('defaults', ('defaults', 'fastest')).
    """
    if not settings.FASTEST[framework].env or same_here:
        return [(names[0], names)]
    return [(name, (name,)) for name in names]


def same_as_defaults(cfg: RunConfig, framework: str) -> dict[str, Any] | None:
    """Whether `framework`'s fastest settings change nothing here, asked of the framework itself.

    Each settings starts the framework's worker once, up to the point where it reports the
    kernels it would run (as --check-setup does): TensorFlow's "fastest" only switches oneDNN on
    (TF_ENABLE_ONEDNN_OPTS=1), which its Linux builds already do by themselves on CPUs with
    AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX. The kernels each reported, {'defaults': ..., 'fastest': ...},
    where both reported the same; None where they differ or either failed to say (then both are timed).
    """
    seen = {}
    for name in ("defaults", "fastest"):
        one = replace(cfg, frameworks=(framework,), settings=name, setup_only=True)
        one = replace(one, parallel=replace(cfg.parallel, devices=1))
        job = cfg.out_dir / "jobs" / f"{framework}-{name}-setup.json"
        atomic_write_json(job, one.to_dict())
        entry = launch.run_one(framework, one, job, name=f"{framework}-{name}-setup")
        if entry["status"] != "ok":
            return None
        seen[name] = entry["setup"]["kernels"]
    return seen if seen["defaults"] == seen["fastest"] else None


def probed(cfg: RunConfig, frameworks: list[str]) -> dict[str, dict[str, Any]]:
    """same_as_defaults for each framework whose "fastest" sets something, where both settings are to be timed."""
    if not {"defaults", "fastest"} <= set(cfg.bench.settings):
        return {}
    found = {f: same_as_defaults(cfg, f) for f in frameworks if settings.FASTEST[f].env}
    return {f: kernels for f, kernels in found.items() if kernels}


def worker_compiles(framework: str, names: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The --compile values to run for one framework, each with every value it stands for.

    JAX's step is compiled by jit either way, so one worker stands for both: ('off', ('off', 'on')).
    """
    if framework in ALWAYS_COMPILED:
        return [(names[0], names)]
    return [(name, (name,)) for name in names]


# Frameworks whose training step is already compiled whole (frameworks/<name>/bench.py says how).
ALWAYS_COMPILED = ("jax",)


def run(cfg: RunConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every worker of the benchmark, `repeats` times; returns the runs and the reference rate.

    A worker is one process: one framework with one settings, running every batch size and loop
    of its job (frameworks/worker.py). An axis that needs its own process (another environment,
    a device count) is one more level of the `workers` list and one more field of the job.
    """
    order = [f for f in cfg.frameworks if not launch.missing_modules(f)]
    runs = [not_run(f, "skipped", not_installed(f)) for f in cfg.frameworks if f not in order]
    try:
        same = probed(cfg, order)
    except KeyboardInterrupt:
        raise interrupted(runs, [(0, f, name) for f in order for name in cfg.bench.settings]) from None
    workers = [
        (repeat, framework, name, stands_for, devices, precision, compiled, compiles)
        for repeat in range(cfg.bench.repeats)
        for framework in (order if repeat % 2 == 0 else order[::-1])  # alternate: no framework always goes first
        for name, stands_for in worker_settings(framework, cfg.bench.settings, framework in same)
        for precision in cfg.bench.precisions  # each in a process of its own: a policy, a compiler cache
        for compiled, compiles in worker_compiles(framework, cfg.bench.compiles)
        for devices in cfg.bench.devices  # N > 1: the framework's engine, in processes of its own (torchrun)
    ]
    references = []
    for i, (repeat, framework, name, stands_for, devices, precision, compiled, compiles) in enumerate(workers):
        mnist = replace(cfg.mnist, precision=precision, compiled=compiled == "on")
        one = replace(
            cfg, frameworks=(framework,), settings=name, mnist=mnist, parallel=replace(cfg.parallel, devices=devices)
        )
        label = f"{framework}-{name}-{repeat + 1}" + (f"-{devices}dev" if len(cfg.bench.devices) > 1 else "")
        label += f"-{precision}" if len(cfg.bench.precisions) > 1 else ""
        label += f"-compile-{compiled}" if len(cfg.bench.compiles) > 1 else ""
        job = cfg.out_dir / "jobs" / f"{label}.json"
        atomic_write_json(job, one.to_dict())
        load = load_average()
        try:
            entry = launch.run_one(framework, one, job, name=label)
        except KeyboardInterrupt:
            raise interrupted(runs, workers[i:]) from None
        runs.append(
            {**entry, "settings": name, "stands_for": list(stands_for), "repeat": repeat + 1, "devices": devices}
            | {"precision": precision, "compile": compiled, "compile_stands_for": list(compiles)}
            | {"load_before": load, "load_after": load_average()}
            | ({"same_kernels": same[framework]} if framework in same else {})
        )
        if not cfg.quiet:
            on = f", {devices} devices" if devices > 1 else ""
            on += f", {precision}, compile {compiled}"
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
    stopped = [{**not_run(w[1], "interrupted", "stopped by Ctrl-C"), "settings": w[2]} for w in left]
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


def load_average() -> float | None:
    """The 1-minute load average: how busy the machine was (our own worker included)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
