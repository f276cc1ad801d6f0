"""bench.json: the benchmark's runs pooled into one row per case, and each row against the others.

A row pools its windows over the repeats: the median window gives the step time; the spread is
the range of the repeats' medians (or, for one repeat, the windows' interquartile range), so a
noisy machine reads as overlapping spreads rather than as a ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import settings
from common.flops import train_flops_per_image
from common.timing import step_statistics

SCHEMA = "triptych/bench/2"
ROW_KEYS = (
    "framework",
    "settings",
    "precision",
    "compile",
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


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """bench.json: config, environment, the reference rate and one row per case, pooled over repeats."""
    cfg, reference = doc["config"], doc["reference"]
    groups: dict[tuple, list[tuple[dict, dict]]] = {}
    failed = []
    for r in doc["runs"]:
        if r["status"] != "ok":
            keys = ("framework", "settings", "precision", "compile", "repeat", "status", "error")
            failed.append({k: r.get(k) for k in keys})
            continue
        for case in r.get("cases", []):
            key = (r["framework"], r["settings"], case["loop"], case["batch_size"], case.get("devices", 1))
            key += (r.get("precision", "float32"), r.get("compile", "off"))
            groups.setdefault(key, []).append((r, case))
    order = {f: i for i, f in enumerate(cfg["frameworks"])}
    rows = [row(members, reference["gflops"]) for members in groups.values()]
    rows.sort(
        key=lambda r: (
            r["batch_size"],
            order.get(r["framework"], 99),
            r["settings"],
            r["precision"] != "float32",
            r["compile"],
            r["loop"],
            r["devices"],
        )
    )
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
        "precision": run.get("precision", "float32"),
        "compile": run.get("compile", "off"),
        "compile_stands_for": run.get("compile_stands_for", [run.get("compile", "off")]),
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
        # the 1-minute load average around its workers (common.bench.tables.busy_line)
        "load_max": max(
            (x for r, _ in members for x in (r.get("load_before"), r.get("load_after")) if x), default=None
        ),
    }
    if case.get("profile"):  # --profile: the first repeat's
        out["profile"] = case["profile"]
    for key in ("os_threads", "peak_gpu_mb", "device_matmul_gflops", "engine", "processes", "per_replica_batch"):
        if case.get(key) is not None:
            out[key] = case[key]
    if case.get("device_matmul_gflops"):
        out["fraction_of_device_matmul"] = stats["gflops"] / case["device_matmul_gflops"]
    return out


def trains_with(r: dict[str, Any]) -> bool:
    """Whether a row ran what training runs use: the training settings, float32, the step uncompiled."""
    precision, compiled = r.get("precision", "float32"), r.get("compile_stands_for", ["off"])
    plain = precision == settings.TRAINING_PRECISION and settings.TRAINING_COMPILE in compiled
    return plain and settings.TRAINING in (r.get("stands_for") or [r["settings"]])


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
            bar = [
                t
                for t in bar
                if (t["settings"], t["precision"], t["compile"]) == (r["settings"], r["precision"], r["compile"])
            ]
            if bar:
                r["relative_to_textbook"] = r["images_per_second"] / bar[0]["images_per_second"]
                r["overlaps_textbook"] = overlap(r, bar[0])


def compare_devices(rows: list[dict[str, Any]]) -> None:
    """A data-parallel row against the same case on one device.

    `relative_to_one_device` is images/s on N devices over images/s on one. On a CPU the N
    devices are simulated and share its cores, at the same total threads, so 1.00x means no
    data-parallel overhead and nothing can scale; on N GPUs `scaling_efficiency` divides by N too.
    """

    def key(r: dict[str, Any]) -> tuple:
        return r["framework"], r["settings"], r["precision"], r["compile"], r["loop"], r["batch_size"]

    one = {key(r): r for r in rows if r["devices"] == 1}
    for r in rows:
        base = one.get(key(r))
        if r["devices"] > 1 and base:
            r["relative_to_one_device"] = r["images_per_second"] / base["images_per_second"]
            r["scaling_efficiency"] = r["relative_to_one_device"] / r["devices"]
            r["overlaps_one_device"] = overlap(r, base)
