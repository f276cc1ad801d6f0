"""The benchmark's tables: bench.json as terminal text (compare.py) and as Markdown (report.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.bench.goals import goals
from common.bench.summary import goal_row
from common.config import BY_NAME
from common.table import markdown, text


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
    return f"textbook ({BY_NAME[r['framework']].textbook})" if r["framework"] in BY_NAME else "textbook"


def settings_label(r: dict[str, Any]) -> str:
    names = " = ".join(r.get("stands_for") or [r["settings"]])
    return names + (" *" if goal_row(r) else "")


def compile_label(r: dict[str, Any]) -> str:
    """'off', 'on', or 'off = on' where the step is compiled either way (JAX's jit)."""
    return " = ".join(r.get("compile_stands_for") or [r.get("compile", "off")])


def busy_line(bench: dict[str, Any]) -> str | None:
    """The benchmark's first line when the load average during its timed windows exceeded the cores.

    Names the frameworks most affected: those whose workers saw that load, the widest relative
    spread of windows first (a busy machine shows up as spread; PyTorch's spin-waiting threads most).
    """
    cores = bench["environment"].get("cores")
    load = bench.get("load_average")
    if not cores or not load or load["max"] <= cores:
        return None
    spread: dict[str, float] = {}
    for r in bench["rows"]:
        if (r.get("load_max") or 0) > cores:
            width = (r["images_per_second_high"] - r["images_per_second_low"]) / r["images_per_second"]
            spread[r["framework"]] = max(width, spread.get(r["framework"], 0.0))
    worst = sorted(spread, key=spread.get, reverse=True)[:2]
    named = ", ".join(f"{f} (spread {100 * spread[f]:.0f}% of its images/s)" for f in worst) or "all"
    return (
        f"BUSY MACHINE: the 1-minute load average reached {load['max']:.1f} on {cores} cores during the timed"
        f" windows, so these numbers do not rank the frameworks; most affected: {named}"
    )


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
        "precision": lambda r: r.get("precision", "float32"),
        "compile": compile_label,
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
        "precision": len({r.get("precision", "float32") for r in rows}) > 1,
        "compile": len({r.get("compile", "off") for r in rows}) > 1,
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
        "of fastest: against the fastest project loop at that batch size; vs textbook: against the same"
        " framework's textbook loop; *: the settings that ran faster in this run, float32, the step uncompiled"
        " (what the goals judge)",
        f"fastest settings (training runs use {bench['training_settings']}): {fastest}",
        f"reference: {ref['what']} ({ref['blas']}) = {ref['gflops']:.1f} GFLOP/s"
        + (f" (best of {len(ref['samples'])} repeats)" if len(ref.get("samples", [])) > 1 else ""),
        f"machine: {cpu}, {env.get('cores')} cores"
        + (f"; 1-minute load average {load['min']:.1f}-{load['max']:.1f} during the run" if load else ""),
    ]
    if len({r["devices"] for r in bench["rows"]}) > 1:
        lines.append(devices_note(bench))
    if any(r.get("precision", "float32") != "float32" for r in bench["rows"]):
        lines.append(
            "precision bfloat16: mixed precision, bfloat16 compute and float32 weights (PyTorch autocast, Keras"
            " mixed_bfloat16 with a float32 output layer, Flax dtype=bfloat16; docs/mixed-precision.md)"
        )
    if any(r.get("compile", "off") != "off" for r in bench["rows"]):
        lines.append(
            "compile off: the step training runs (PyTorch eager, TensorFlow tf.function, JAX jit); on: torch.compile"
            " (default mode), tf.function(jit_compile=True), JAX jit (the same program: off = on)"
        )
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


PROFILE_TITLE = (
    "Where the time goes (--profile): each loop under its framework's own profiler for one more window;"
    " ms per step of each op (PyTorch: self time on the calling thread; TensorFlow: op self time; JAX: XLA"
    " thunks, summed over its threads), share of all the profiled time"
)


def profile_rows(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    lines = []
    for r in bench["rows"]:
        head = [r["framework"], settings_label(r), f"{r.get('precision', 'float32')}, compile {compile_label(r)}"]
        head += [loop_label(r), str(r["batch_size"])]
        for op in r.get("profile") or []:
            lines.append([*head, op["op"][:90], f"{op['ms_per_step']:.2f}", f"{100 * op['share']:.0f}%"])
    return ("framework", "settings", "precision", "loop", "batch", "op", "ms/step", "share"), lines


def table(bench: dict[str, Any]) -> str:
    """The terminal report compare.py prints after a benchmark."""
    busy = busy_line(bench)
    parts = [*([busy] if busy else []), headline(bench), "", text(*table_rows(bench)), "", *notes(bench)]
    goal_columns, goal_rows = goals(bench)
    if goal_rows:
        parts += ["", "Goals (the settings that ran faster here, this project's loop)", text(goal_columns, goal_rows)]
    columns, lines = profile_rows(bench)
    if lines:
        parts += ["", PROFILE_TITLE, text(columns, lines)]
    return "\n".join(parts)


def markdown_report(bench: dict[str, Any]) -> str:
    """The same as Markdown, for report.md, README and docs/performance.md."""
    busy = busy_line(bench)
    parts = [*([f"**{busy}**"] if busy else []), headline(bench), markdown(*table_rows(bench))]
    parts.append("\n".join(f"- {line}" for line in notes(bench)))
    goal_columns, goal_rows = goals(bench)
    if goal_rows:
        parts += ["Goals (the settings that ran faster here, this project's loop):", markdown(goal_columns, goal_rows)]
    columns, lines = profile_rows(bench)
    if lines:
        parts += [PROFILE_TITLE + ":", markdown(columns, lines)]
    return "\n\n".join(parts)
