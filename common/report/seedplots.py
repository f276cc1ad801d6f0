"""curves.png of a --seeds run: every seed's result, joined by seed, and the intervals tested.

Left column: each framework's test accuracy (top) and test loss (bottom) on every seed, one
grey line per seed joining the frameworks (the pairing), with each framework's mean and 95%
interval beside its points. Right column: the same-seed differences of each pair, their mean,
the paired and Welch 90% intervals, and the equivalence margin, so the verdict can be seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.report.style import style

VERDICT_COLOR = {"equivalent": "tab:green", "different": "tab:red", "undetermined": "tab:orange"}


def seeds_figure(plt: Any, doc: dict[str, Any]) -> Any:
    stats = doc["statistics"]
    fig, axes = plt.subplots(2, 2, figsize=(13.0, 9.5), layout="constrained", width_ratios=(1.0, 1.25))
    for row, (key, field, scale) in enumerate((("accuracy", "test_accuracy", 100.0), ("loss", "test_loss", 1.0))):
        metric = stats["metrics"][key]
        target = (stats.get("target") or {}).get("accuracy_points") if key == "accuracy" else None
        column = columns(doc, field, scale)
        per_seed_panel(axes[row][0], stats, metric, column, target)
        pairs_panel(axes[row][1], metric, column)
    return fig


def columns(doc: dict[str, Any], field: str, scale: float) -> dict[str, np.ndarray]:
    """Each compared framework's numbers on the seeds the statistics used, in seed order."""
    stats = doc["statistics"]
    value = {(r["seed"], r["framework"]): scale * r[field] for r in doc["runs"] if r["status"] == "ok"}
    return {f: np.array([value[s, f] for s in stats["used"]]) for f in stats["frameworks"]}


def unit(metric: dict[str, Any]) -> str:
    return " (%)" if metric["unit"] == "points" else ""


def per_seed_panel(
    ax: Any, stats: dict[str, Any], metric: dict[str, Any], column: dict[str, np.ndarray], target: float | None
) -> None:
    """Points per framework and seed, joined by seed; mean and 95% interval to the right of each."""
    names = stats["frameworks"]
    for j, _ in enumerate(stats["used"]):
        ax.plot(range(len(names)), [column[f][j] for f in names], color="0.6", linewidth=0.9, zorder=1)
    for i, f in enumerate(names):
        s = style(f)
        ys = column[f]
        ax.scatter([i] * len(ys), ys, marker=s["marker"], s=50, facecolors="none", edgecolors=s["color"], zorder=3)
        summary = metric["per_framework"][f]
        if summary["ci95"] is not None:
            lo, hi = summary["ci95"]
            ax.errorbar(
                i - 0.2,
                summary["mean"],
                yerr=[[summary["mean"] - lo], [hi - summary["mean"]]],
                fmt="D",
                color=s["color"],
                markersize=6,
                capsize=5,
                linewidth=2,
                zorder=3,
            )
    if target is not None:
        label = f"documented for the defaults: {target:g}%"
        ax.axhline(target, color="black", linestyle="--", linewidth=0.9, label=label)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, frameon=False)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.35)
    if names:
        label_seeds(ax, stats["used"], column[names[-1]], len(names) - 1)
    ax.set_ylabel(f"{metric['label']}{unit(metric)}")
    ax.set_title(
        f"{metric['label'].capitalize()} per seed (grey lines join one seed)\n"
        "circles: seeds; diamond and bar: mean and 95% interval",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")


def label_seeds(ax: Any, seeds: list[int], ys: np.ndarray, x: float) -> None:
    """'seed N' right of the last framework's points, pushed apart where seeds end close together."""
    low, high = ax.get_ylim()
    gap = 0.055 * (high - low)
    placed: list[float] = []
    for j in np.argsort(ys, kind="stable"):
        y = max(float(ys[j]), placed[-1] + gap) if placed else float(ys[j])
        placed.append(y)
        ax.annotate(
            f"seed {seeds[j]}",
            (x, float(ys[j])),
            xytext=(x + 0.12, y),
            textcoords="data",
            va="center",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "color": "0.7", "linewidth": 0.6} if y != ys[j] else None,
        )


def pairs_panel(ax: Any, metric: dict[str, Any], column: dict[str, np.ndarray]) -> None:
    """Per pair: same-seed differences, mean, paired 90% interval (thick), Welch 90% (thin), margin."""
    pairs = metric["pairs"]
    margin = metric["margin"]
    ax.axvspan(-margin, margin, color="tab:green", alpha=0.08, label=f"margin ±{margin:g}")
    ax.axvline(0, color="black", linewidth=0.8)
    for i, p in enumerate(pairs):
        y = len(pairs) - 1 - i
        color = VERDICT_COLOR.get(p["verdict"], "black")
        if p["welch_ci90"] is not None:
            lo, hi = p["welch_ci90"]
            ax.plot([lo, hi], [y - 0.18, y - 0.18], color="0.45", linewidth=1.2, marker="|", markersize=10)
        if p["ci90"] is not None:
            lo, hi = p["ci90"]
            # end ticks keep a zero-width interval (every seed gave the same difference) visible
            ax.plot([lo, hi], [y, y], color=color, linewidth=5, solid_capstyle="butt", alpha=0.8)
            ax.plot([lo, hi], [y, y], linestyle="none", marker="|", markersize=16, markeredgewidth=2.5, color=color)
        if p["mean"] is not None:
            ax.plot(p["mean"], y, marker="D", color="black", markersize=5, zorder=4)
        label = p["verdict"] + (f" (~{p['seeds_needed']} seeds)" if p.get("seeds_needed") else "")
        ax.annotate(
            label,
            (1.0, y),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 7),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color=color,
        )
    for i, p in enumerate(pairs):
        d = column[p["a"]] - column[p["b"]]
        ax.scatter(d, np.full(d.size, len(pairs) - 1 - i + 0.2), s=14, color="0.3", zorder=3)
    ax.plot([], [], color="tab:gray", linewidth=5, label="paired 90% interval (colour: verdict)")
    ax.plot([], [], color="0.45", linewidth=1.2, marker="|", label="Welch 90% interval (unpaired)")
    ax.scatter([], [], s=14, color="0.3", label="one seed's difference")
    ax.set_yticks(range(len(pairs)), [f"{p['a']}\n- {p['b']}" for p in reversed(pairs)], fontsize=8)
    ax.set_ylim(-0.7, len(pairs) - 0.3)
    spread = [abs(v) for p in pairs for ci in (p["ci90"], p["welch_ci90"]) if ci for v in ci]
    spread += [abs(v) for p in pairs for v in column[p["a"]] - column[p["b"]]]
    widest = max([margin, *spread])
    ax.set_xlim(-1.15 * widest, 1.15 * widest)
    ax.set_xlabel(f"same-seed difference a - b, {metric['label']}{' (points)' if metric['unit'] else ''}")
    ax.set_title(f"{metric['label'].capitalize()}: is each pair equivalent within ±{margin:g}?", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, fontsize=8, frameon=False)
