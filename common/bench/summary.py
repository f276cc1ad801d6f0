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
    compare_settings(rows)
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
        "fastest_settings": {f: fastest_finding(f, rows) for f in cfg["frameworks"]},
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
    if run.get("same_kernels"):  # "fastest" changed nothing here (common.bench.cases.same_as_defaults)
        out["same_kernels"] = run["same_kernels"]
    for key in ("os_threads", "peak_gpu_mb", "device_matmul_gflops", "engine", "processes", "per_replica_batch"):
        if case.get(key) is not None:
            out[key] = case[key]
    if case.get("device_matmul_gflops"):
        out["fraction_of_device_matmul"] = stats["gflops"] / case["device_matmul_gflops"]
    return out


def goal_row(r: dict[str, Any]) -> bool:
    """Whether the goals judge this row: the settings that ran fastest in this run, float32, the step uncompiled.

    Training runs use float32 and the uncompiled step (settings.TRAINING_PRECISION, TRAINING_COMPILE);
    of the settings timed, the faster here (compare_settings), not the one settings.py expects.
    """
    precision, compiled = r.get("precision", "float32"), r.get("compile_stands_for", ["off"])
    plain = precision == settings.TRAINING_PRECISION and settings.TRAINING_COMPILE in compiled
    return plain and r.get("fastest_settings_here", True)


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


def compare_settings(rows: list[dict[str, Any]]) -> None:
    """Each framework's settings against each other, case by case: which ran faster in this run.

    `fastest_settings_here` marks the faster row of a case (the only one, where one settings was
    timed); `settings_compared` names the other settings timed, and `overlaps_settings` says
    that the spreads overlap, so that this run does not tell them apart.
    """

    def case(r: dict[str, Any]) -> tuple:
        return r["framework"], r["loop"], r["batch_size"], r["devices"], r["precision"], r["compile"]

    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(case(r), []).append(r)
    for same in groups.values():
        best = max(same, key=lambda r: r["images_per_second"])
        for r in same:
            r["fastest_settings_here"] = r is best
            r["settings_compared"] = [o["settings"] for o in same if o is not r]
            r["overlaps_settings"] = any(overlap(r, o) for o in same if o is not r)


def fastest_finding(framework: str, rows: list[dict[str, Any]]) -> str:
    """What "fastest" was for one framework in this run: measured here, the defaults here, or not timed here.

    Said of the rows the goals look at (the project loop, float32, uncompiled, one device); a
    framework whose "fastest" sets nothing is its defaults everywhere.
    """
    wanted = settings.describe(framework, "fastest")
    if not settings.FASTEST.get(framework, settings.Tuning((), "")).env:
        return wanted
    mine = [
        r
        for r in rows
        if r["framework"] == framework
        and r["loop"] == "project"
        and r["devices"] == 1
        and r["precision"] == settings.TRAINING_PRECISION
        and settings.TRAINING_COMPILE in r["compile_stands_for"]
    ]
    same = next((r["same_kernels"] for r in mine if r.get("same_kernels")), None)
    if same:
        return (
            f"{wanted} changes nothing here: {framework} reports the same kernels ({same['fastest']}) under its"
            " defaults, so one worker timed both (defaults = fastest)"
        )
    lines = [settings_line(r, mine) for r in mine if r["fastest_settings_here"] and r["settings_compared"]]
    if not lines:
        return f"{wanted}, not timed against the defaults in this run (its measurement: docs/performance.md)"
    return "; ".join(lines)


def settings_line(best: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """'batch 100: defaults 6,164 images/s (6,020-6,230) against fastest 5,500 (5,410-5,600): defaults faster'."""
    other = next(r for r in rows if r["batch_size"] == best["batch_size"] and r is not best)

    def timed(r: dict[str, Any]) -> str:
        low, high = r["images_per_second_low"], r["images_per_second_high"]
        return f"{r['settings']} {r['images_per_second']:,.0f} images/s ({low:,.0f}-{high:,.0f})"

    verdict = "within noise" if best["overlaps_settings"] else f"{best['settings']} faster"
    return f"batch {best['batch_size']}: {timed(best)} against {timed(other)}: {verdict}"
