"""curves.png: what the table cannot show, namely how the frameworks got to their numbers.

matplotlib is imported inside render_curves only, so the rest of common/ stays NumPy-only
and a results document can be read where matplotlib is missing.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from common import results
from common.bench.goals import GOAL_OF_BLAS
from common.bench.tables import loop_label
from common.data import PLANE_POINTS
from common.report.seedplots import seeds_figure
from common.report.style import style
from common.results import mode

LOSS_FLOOR = 1e-12
DPI = 110


def wants_curves(doc: dict[str, Any]) -> bool:
    """Training runs only: a benchmark or a scored checkpoint has no curves to draw."""
    return mode(doc) in ("plane", "mnist")


def render_curves(doc: dict[str, Any], config: str) -> bytes | None:
    """curves.png as PNG bytes (written atomically by the caller), or None when there is nothing to draw.

    `config` is the report's one-line configuration, so figure and report say the same thing.
    """
    if not wants_curves(doc):
        return None
    plt = pyplot()
    if isinstance(doc.get("statistics"), dict):  # --seeds: the per-seed results and intervals (seedplots.py)
        fig = seeds_figure(plt, doc)
    else:
        fig = plane_figure(plt, doc) if doc["task"] == "plane" else mnist_figure(plt, doc)
    fig.suptitle(figure_title(doc, config), fontsize=10)
    return png(plt, fig)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, never a window), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(plt: Any, fig: Any) -> bytes:
    """The figure as PNG bytes (no software tag: the same figure gives the same bytes); closes it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def ok_runs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["runs"] if r["status"] == "ok"]


def left_out(doc: dict[str, Any]) -> str:
    """'not plotted: jax (failed)' for runs without numbers, so a missing line is explained."""
    gone = [f"{r['framework']}{seed_of(r)} ({r['status']})" for r in doc["runs"] if r["status"] != "ok"]
    return f"not plotted: {', '.join(gone)}" if gone else ""


def seed_of(run: dict[str, Any]) -> str:
    """' seed 3' for a run of a --seeds document (common.verdict.seeds), else nothing."""
    return f" seed {run['seed']}" if "seed" in run else ""


def figure_title(doc: dict[str, Any], config: str) -> str:
    lines = [f"triptych {results.task_label(doc)}: {config}"]
    if left_out(doc):
        lines.append(left_out(doc))
    return "\n".join(lines)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` steps; one value per complete window."""
    if window <= 1 or len(values) < window:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    return (cumsum[window:] - cumsum[:-window]) / window


def smoothing_window(n: int) -> int:
    return max(1, min(50, n // 20))


def mnist_figure(plt: Any, doc: dict[str, Any]) -> Any:
    runs = ok_runs(doc)
    reference = next((r for r in runs if r["framework"] == "pytorch"), None)
    shared = doc["config"]["mnist"].get("init") == "shared" and reference is not None and len(runs) > 1
    panels = 3 if shared else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.0), layout="constrained")
    loss_panel(axes[0], runs)
    accuracy_panel(axes[1], runs)
    if shared:
        parity_panel(axes[2], runs, reference)
    return fig


def loss_panel(ax: Any, runs: list[dict[str, Any]]) -> None:
    """Raw step losses faint, their moving average solid: noise and trend on one axis."""
    window = 1
    for r in runs:
        losses = np.asarray(r.get("step_losses") or [], dtype=np.float64)
        if losses.size == 0:
            continue
        s = style(r["framework"])
        steps = np.arange(1, losses.size + 1)
        window = smoothing_window(losses.size)
        if window > 1:
            ax.plot(steps, losses, color=s["color"], linewidth=0.6, alpha=0.25)
        smooth = moving_average(losses, window)
        ax.plot(
            steps[steps.size - smooth.size :],
            smooth,
            color=s["color"],
            linestyle=s["linestyle"],
            linewidth=s["width"],
            label=r["framework"],
        )
    plain_log_y(ax)
    step_axis(ax)
    ax.set_ylabel("training loss (cross-entropy, log scale)")
    how = f"faint: raw; lines: moving average over {window} steps" if window > 1 else "too few steps to smooth"
    ax.set_title(f"Training loss per step\n{how}", fontsize=10)
    legend(ax)


def accuracy_panel(ax: Any, runs: list[dict[str, Any]]) -> None:
    epochs_seen: set[int] = set()
    for r in runs:
        epochs = r.get("epochs") or []
        if not epochs:
            continue
        s = style(r["framework"])
        x = [e["epoch"] for e in epochs]
        y = [100 * e["test_accuracy"] for e in epochs]
        epochs_seen.update(x)
        ax.plot(
            x,
            y,
            color=s["color"],
            linestyle=s["linestyle"],
            linewidth=1.5,
            marker=s["marker"],
            markersize=s["size"],
            markerfacecolor="none",
            markeredgewidth=1.8,
            label=r["framework"],
        )
    ax.set_xticks(sorted(epochs_seen))
    if len(epochs_seen) == 1:
        only = next(iter(epochs_seen))
        ax.set_xlim(only - 0.5, only + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy after each epoch\n(10,000 test images)", fontsize=10)
    ax.grid(alpha=0.3)
    legend(ax)


def parity_panel(ax: Any, runs: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    """|step loss - PyTorch's| per step: how far the frameworks drift apart as training goes on."""
    base = np.asarray(reference.get("step_losses") or [], dtype=np.float64)
    for r in runs:
        if r is reference:
            continue
        losses = np.asarray(r.get("step_losses") or [], dtype=np.float64)
        n = min(base.size, losses.size)
        if n == 0:
            continue
        s = style(r["framework"])
        diff = np.maximum(np.abs(losses[:n] - base[:n]), LOSS_FLOOR)
        steps = np.arange(1, n + 1)
        window = smoothing_window(n)
        if window > 1:
            ax.plot(steps, diff, color=s["color"], linewidth=0.6, alpha=0.3)
        trend = 10 ** moving_average(np.log10(diff), window)
        ax.plot(
            steps[n - trend.size :],
            trend,
            color=s["color"],
            linestyle=s["linestyle"],
            linewidth=s["width"],
            label=f"{r['framework']} vs pytorch",
        )
    ax.axhline(
        LOSS_FLOOR, color="black", linewidth=0.8, linestyle=":", label=f"floor: exact zeros drawn at {LOSS_FLOOR:g}"
    )
    ax.set_yscale("log")
    step_axis(ax)
    ax.set_ylabel("|step loss - PyTorch step loss| (log scale)")
    ax.set_title(
        "How parity decays over training (shared initial weights)\nfaint: raw; lines: geometric moving average",
        fontsize=10,
    )
    legend(ax, below=True)


def legend(ax: Any, below: bool = False) -> None:
    """Inside where the data leaves room; below the axes where lines fill the whole panel."""
    if not ax.get_legend_handles_labels()[0]:
        return
    if below:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize=8, frameon=False)
    else:
        ax.legend(loc="best", fontsize=8, framealpha=0.85)


def step_axis(ax: Any) -> None:
    import matplotlib.ticker

    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("training step")


def plain_log_y(ax: Any) -> None:
    """Log scale labelled 0.5, 1, 2 rather than 5x10^-1; call after plotting (reads the limits)."""
    import matplotlib.ticker

    ax.set_yscale("log")
    plain = matplotlib.ticker.FormatStrFormatter("%g")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    crowded = high / low > 30  # well over a decade: label the powers of ten only
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter() if crowded else plain)


def plane_figure(plt: Any, doc: dict[str, Any]) -> Any:
    runs = ok_runs(doc)
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 5.2), layout="constrained")
    fit_panel(axes[0], runs, doc.get("optimum"))
    descent_panel(axes[1], runs, doc.get("optimum"))
    return fig


def fit_panel(ax: Any, runs: list[dict[str, Any]], optimum: dict[str, float] | None) -> None:
    """Predicted against measured value for the five points: on the diagonal means a perfect fit."""
    x, y, v = PLANE_POINTS.T
    lo, hi = float(v.min()), float(v.max())
    pad = 0.06 * (hi - lo)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8, label="prediction = value")
    if optimum:
        ax.scatter(
            v,
            optimum["a"] * x + optimum["b"] * y,
            marker="x",
            s=90,
            color="black",
            linewidths=1.2,
            label=f"exact optimum (a={optimum['a']:.4f}, b={optimum['b']:.4f})",
            zorder=3,
        )
    for r in runs:
        s = style(r["framework"])
        ax.scatter(
            v,
            r["a"] * x + r["b"] * y,
            marker=s["marker"],
            s=(2.2 * s["size"]) ** 2,
            facecolors="none",
            edgecolors=s["color"],
            linewidths=1.6,
            label=f"{r['framework']} (a={r['a']:.4f}, b={r['b']:.4f})",
            zorder=2,
        )
    at = optimum["a"] * x + optimum["b"] * y if optimum else v
    for i, (vi, yi) in enumerate(zip(v, at, strict=True), start=1):
        ax.annotate(f"P{i}", (vi, yi), textcoords="offset points", xytext=(10, -14), fontsize=8)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("measured value at the point")
    ax.set_ylabel("fitted plane a*x + b*y at the point")
    ax.set_title("Fitted plane at the five points", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85, markerscale=0.6)


def descent_panel(ax: Any, runs: list[dict[str, Any]], optimum: dict[str, float] | None) -> None:
    for r in runs:
        losses = np.asarray(r.get("losses") or [], dtype=np.float64)
        if losses.size == 0:
            continue
        s = style(r["framework"])
        ax.plot(
            np.arange(1, losses.size + 1),
            losses,
            color=s["color"],
            linestyle=s["linestyle"],
            linewidth=s["width"],
            label=f"{r['framework']} (final {losses[-1]:.6f})",
        )
    if optimum:
        ax.axhline(
            optimum["loss"], color="black", linewidth=0.9, linestyle="-.", label=f"exact optimum {optimum['loss']:.6f}"
        )
    ax.set_xscale("log")
    plain_log_y(ax)
    ax.set_xlabel("gradient-descent iteration (log scale)")
    ax.set_ylabel("mean absolute error (log scale)")
    ax.set_title("Loss per iteration against the exact optimum", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    legend(ax)


def render_bench(bench: dict[str, Any]) -> bytes:
    """bench.png: one labelled bar per case at a single batch size, else images/s against batch size.

    Colour: the framework. Bars (one batch size) name their case, so every precision x compile x settings
    combination reads by name; hatched: bfloat16, faint: a framework's defaults where its fastest settings
    differ, or a textbook loop. Lines (several batch sizes): one per case, styled as speed_lines says.
    """
    plt = pyplot()
    sizes = sorted({r["batch_size"] for r in bench["rows"]})
    if len(sizes) == 1:
        fig, ax = plt.subplots(figsize=(10.5, 1.9 + 0.42 * len(bench["rows"])), layout="constrained")
        speed_bars(ax, bench)
    else:
        fig, ax = plt.subplots(figsize=(10.5, 5.8), layout="constrained")
        speed_lines(ax, bench, sizes)
    env = bench["environment"]
    cpu = f"{env.get('cpu')} ({' '.join(env.get('vector_extensions') or [])}), {env.get('cores')} cores"
    load = bench.get("load_average")
    busy = f"; load average {load['min']:.1f}-{load['max']:.1f}" if load else ""
    batch = f", batch {sizes[0]}" if len(sizes) == 1 else ""
    fig.suptitle(f"MNIST CNN training speed{batch}\n{cpu}{busy}", fontsize=10)
    return png(plt, fig)


def case_key(r: dict[str, Any]) -> tuple[str, str, str, int, str, str]:
    """What a bar or a line stands for: framework, settings, loop, devices, precision and compile setting."""
    compiled = " = ".join(r.get("compile_stands_for") or ["off"])
    return (
        r["framework"],
        " = ".join(r["stands_for"]),
        r["loop"],
        r.get("devices", 1),
        r.get("precision", "float32"),
        compiled,
    )


def case_label(r: dict[str, Any]) -> str:
    framework, names, _, devices, precision, compiled = case_key(r)
    return (
        f"{framework}, {names} settings, {loop_label(r)}"
        + (f", {devices} devices" * (devices > 1))
        + (f", {precision}" * (precision != "float32"))
        + (f", compile {compiled}" * (compiled != "off"))
    )


def speed_bars(ax: Any, bench: dict[str, Any]) -> None:
    """One horizontal bar per case, top to bottom in the table's order; whiskers: the spread."""
    rows = bench["rows"]
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows, strict=True):
        _, names, loop, _, precision, _ = case_key(r)
        value = r["images_per_second"]
        ax.barh(
            y,
            value,
            height=0.7,
            color=style(r["framework"])["color"],
            alpha=0.45 if names == "defaults" or loop == "textbook" else 0.9,
            hatch="///" if precision != "float32" else None,
            edgecolor="white",
        )
        low, high = r["images_per_second_low"], r["images_per_second_high"]
        ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="black", capsize=3, linewidth=1)
        ax.annotate(f"{value:,.0f}", (high, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(ys, [case_label(r) for r in rows], fontsize=8)
    goal_line(ax, bench, vertical=True)
    ax.set_xlim(left=0, right=1.12 * max(r["images_per_second_high"] for r in rows))
    ax.set_xlabel("training images per second (median; whiskers: spread; hatched: bfloat16)")
    ax.grid(alpha=0.3, axis="x")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8, framealpha=0.85)


def speed_lines(ax: Any, bench: dict[str, Any], sizes: list[int]) -> None:
    """Images/s against batch size, one line per case, bars = spread.

    Colour and marker: the framework; filled: this project's loop, hollow and dotted: the
    textbook loop; faint and dashed: a framework's defaults where its fastest settings differ;
    thick: bfloat16; dash-dot-dot: compiled. The lines are spread a little sideways at each batch
    size so that no bar hides another.
    """
    lines: dict[tuple[str, str, str, int, str, str], list[dict[str, Any]]] = {}
    for r in bench["rows"]:
        lines.setdefault(case_key(r), []).append(r)
    shifts = np.linspace(-1, 1, len(lines)) * 0.06 if len(lines) > 1 else [0.0]
    for shift, ((framework, names, loop, devices, precision, compiled), rows) in zip(
        shifts, lines.items(), strict=True
    ):
        rows = sorted(rows, key=lambda r: r["batch_size"])
        x = np.array([r["batch_size"] for r in rows], dtype=float) * 10**shift
        y = np.array([r["images_per_second"] for r in rows])
        low = y - np.array([r["images_per_second_low"] for r in rows])
        high = np.array([r["images_per_second_high"] for r in rows]) - y
        s = style(framework)
        textbook, defaults = loop == "textbook", names == "defaults"
        mixed, compiled_only = precision != "float32", compiled == "on"
        ax.errorbar(
            x,
            y,
            yerr=[low, high],
            color=s["color"],
            alpha=0.45 if defaults else 1.0,
            linestyle=":"
            if textbook
            else "--"
            if defaults
            else "-."
            if devices > 1
            else (0, (6, 2, 1, 2, 1, 2))
            if compiled_only
            else "-",
            linewidth=1.3 if textbook else s["width"] * (2 if mixed else 1),
            marker=s["marker"],
            markersize=s["size"] + 1,
            markerfacecolor="white" if textbook else s["color"],
            markeredgewidth=1.6,
            capsize=4,
            label=case_label(rows[0]),
        )
    goal_line(ax, bench)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size (log scale; the lines are spread sideways a little at each size)")
    ax.set_ylabel("training images per second (median; bars: spread)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def goal_line(ax: Any, bench: dict[str, Any], vertical: bool = False) -> None:
    """The 40%-of-BLAS goal in images/s: where a framework's line (or bar) should stay above."""
    gflops = bench["reference"].get("gflops")
    if not gflops or not np.isfinite(gflops):
        return
    images = GOAL_OF_BLAS * gflops * 1e9 / bench["train_flops_per_image"]
    line = ax.axvline if vertical else ax.axhline
    line(images, color="black", linewidth=0.9, linestyle="-.", label=f"{GOAL_OF_BLAS:.0%} of NumPy fp32 matmul")
