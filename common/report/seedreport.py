"""The tables of a --seeds run, for the terminal and for report.md, from its results document.

Everything is read from the document (runs with their seed, per-seed verdicts, the statistics
of common.verdict.seeds), so `compare.py --report` re-renders it without SciPy and without training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import table
from common.verdict import parity

Table = tuple[tuple[str, ...], list[list[str]]]


def is_multi_seed(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("statistics"), dict)


def seed_text(seeds: list[int] | tuple[int, ...]) -> str:
    """'0-4' for a run of consecutive seeds, else '0, 1, 5' (a tuple before JSON, a list after)."""
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def ok_values(doc: dict[str, Any], framework: str, key: str) -> list[float]:
    """One number of a framework on each seed the statistics used."""
    used = set(doc["statistics"]["used"])
    return [
        r[key]
        for r in doc["runs"]
        if r["framework"] == framework and r["status"] == "ok" and r["seed"] in used and r.get(key) is not None
    ]


def mean_std(values: list[float], scale: float, digits: int, unit: str = "") -> str:
    if not values:
        return "-"
    x = scale * np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return f"{x[0]:.{digits}f}{unit}"
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}{unit}"


def summary_table(doc: dict[str, Any]) -> Table:
    """One row per framework: mean ± std over the seeds the statistics used."""
    columns = ("framework", "version", "device", "seeds ok", "test accuracy %", "test loss", "train loss", "train s")
    frameworks = list(dict.fromkeys(r["framework"] for r in doc["runs"]))
    rows = []
    for f in frameworks:
        runs = [r for r in doc["runs"] if r["framework"] == f]
        ok = [r for r in runs if r["status"] == "ok"]
        head = [f, (ok or runs)[0].get("version") or "-", (ok or runs)[0].get("device") or "-"]
        if not ok:
            rows.append([*head, f"{runs[0]['status']}: {runs[0].get('error', '')}"])
            continue
        rows.append(
            [
                *head,
                f"{len(ok)} of {len(runs)}",
                mean_std(ok_values(doc, f, "test_accuracy"), 100, 2),
                mean_std(ok_values(doc, f, "test_loss"), 1, 4),
                mean_std(ok_values(doc, f, "final_loss"), 1, 4),
                mean_std(ok_values(doc, f, "train_seconds"), 1, 1),
            ]
        )
    return columns, rows


def per_seed_table(doc: dict[str, Any]) -> Table:
    """The numbers behind the statistics: each seed's accuracy and loss, and its own verdict."""
    frameworks = list(dict.fromkeys(r["framework"] for r in doc["runs"]))
    columns = ("seed", *(f"{f} %" for f in frameworks), *(f"{f} loss" for f in frameworks), "checks of this seed")
    by_key = {(r["seed"], r["framework"]): r for r in doc["runs"]}
    rows = []
    for item in doc["seeds"]:
        runs = [by_key.get((item["seed"], f)) for f in frameworks]
        accuracy = [cell(r, "test_accuracy", 100, ".2f") for r in runs]
        loss = [cell(r, "test_loss", 1, ".4f") for r in runs]
        rows.append([str(item["seed"]), *accuracy, *loss, seed_status(item["parity"])])
    return columns, rows


def cell(run: dict[str, Any] | None, key: str, scale: float, fmt: str) -> str:
    if run is None:
        return "-"
    if run["status"] != "ok":
        return run["status"]
    return format(scale * run[key], fmt)


def seed_status(verdict: dict[str, Any]) -> str:
    return parity.status_of(verdict)


def framework_table(doc: dict[str, Any]) -> Table:
    """Mean, std and 95% interval of each metric per framework, and the documented accuracy."""
    stats = doc["statistics"]
    metrics = stats["metrics"]
    target = stats.get("target")
    columns = ["framework", "n"]
    for m in metrics.values():
        columns += [f"{m['label']} mean", "std", "95% interval"]
    if target:
        columns.append(f"≥ {target['accuracy_points']:g}%")
    rows = []
    for f in stats["frameworks"]:
        row = [f, str(metrics["accuracy"]["per_framework"][f]["n"])]
        for m in metrics.values():
            s = m["per_framework"][f]
            row += [num(s["mean"], m), num(s["std"], m), span(s["ci95"], m, signed=False)]
        if target:
            row.append(reached_text(target["per_framework"][f], target["accuracy_points"]))
        rows.append(row)
    return tuple(columns), rows


def reached_text(entry: dict[str, Any], points: float) -> str:
    """'4 of 5 seeds; mean interval spans 98.8': how often, and whether on average."""
    mean = {"reached": "mean above", "missed": "mean below"}.get(entry["verdict"], "mean interval spans")
    return f"{entry['seeds']} of {entry['n']} seeds; {mean} {points:g}"


def pairs_table(doc: dict[str, Any]) -> Table:
    """Same-seed differences a - b: paired and Welch 90% intervals, margin and verdict."""
    columns = ("pair (a - b)", "metric", "n", "mean difference", "paired 90% interval", "Welch 90% interval")
    columns += ("margin", "verdict")
    rows = []
    for m in doc["statistics"]["metrics"].values():
        for p in m["pairs"]:
            rows.append(
                [
                    f"{p['a']} - {p['b']}",
                    m["label"],
                    str(p["n"]),
                    num(p["mean"], m, signed=True),
                    span(p["ci90"], m),
                    span(p["welch_ci90"], m),
                    f"±{m['margin']:g}",
                    verdict_text(p),
                ]
            )
    return columns, rows


def verdict_text(pair: dict[str, Any]) -> str:
    if pair["verdict"] != "undetermined":
        return pair["verdict"]
    if pair["ci90"] is None:
        return "undetermined (no interval from one seed)"
    needed = pair["seeds_needed"]
    return f"undetermined (~{needed} seeds would settle it)" if needed else "undetermined (over 100 seeds needed)"


def variation_table(doc: dict[str, Any]) -> Table:
    """Does the seed move a number more than the framework does, on the same seed?"""
    columns = ("metric", "between seeds (std)", "between frameworks, same seed (std)", "larger")
    rows = []
    for m in doc["statistics"]["metrics"].values():
        v = m["variation"]
        if v["between_seeds"] is None:
            rows.append([m["label"], "-", "-", "needs 2 seeds and 2 frameworks"])
            continue
        ratio = v["ratio"]
        if ratio is None:
            larger = "seed (frameworks identical)"
        elif ratio >= 1:
            larger = f"seed, {ratio:.1f}x"
        else:
            larger = f"framework, {1 / ratio:.1f}x"
        rows.append([m["label"], num(v["between_seeds"], m), num(v["between_frameworks"], m), larger])
    return columns, rows


def others_table(doc: dict[str, Any]) -> Table:
    """Each framework minus the mean of the others on the same seed: systematically above or below?"""
    metrics = doc["statistics"]["metrics"]
    columns = ["framework"]
    for m in metrics.values():
        columns += [f"{m['label']} vs others", "95% interval", "seeds above / below", "systematic"]
    rows = []
    for f in doc["statistics"]["frameworks"]:
        if not all(f in m["against_others"] for m in metrics.values()):
            continue
        row = [f]
        for m in metrics.values():
            s = m["against_others"][f]
            row += [num(s["mean"], m, signed=True), span(s["ci95"], m), f"{s['above']} / {s['below']}", s["direction"]]
        rows.append(row)
    return tuple(columns), rows


def digits(metric: dict[str, Any]) -> int:
    return 3 if metric["unit"] == "points" else 5


def num(value: float | None, metric: dict[str, Any], signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:{'+' if signed else ''}.{digits(metric)}f}"


def span(ci: list[float] | None, metric: dict[str, Any], signed: bool = True) -> str:
    if ci is None:
        return "-"
    sign = "+" if signed else ""
    return f"{ci[0]:{sign}.{digits(metric)}f} to {ci[1]:{sign}.{digits(metric)}f}"


def seeds_line(doc: dict[str, Any]) -> str:
    stats = doc["statistics"]
    line = f"statistics over {len(stats['used'])} of {len(stats['seeds'])} seeds: {seed_text(stats['used']) or 'none'}"
    if stats["excluded"]:
        line += "; left out: " + "; ".join(stats["excluded"])
    return line


def sections(doc: dict[str, Any]) -> list[tuple[str, Table]]:
    """(title, table) in reading order; the same for the terminal and for report.md."""
    stats = doc["statistics"]
    out = [
        (f"Per seed ({seeds_line(doc)})", per_seed_table(doc)),
        ("Per framework: mean, std and 95% interval over the seeds (accuracy in %)", framework_table(doc)),
    ]
    if any(m["pairs"] for m in stats["metrics"].values()):
        title = "Same-seed differences a - b (accuracy in points): equivalent when the paired 90% interval is inside"
        out.append((title + " ±margin (TOST)", pairs_table(doc)))
        out.append(("Variation: the choice of seed against the choice of framework", variation_table(doc)))
    if any(m["against_others"] for m in stats["metrics"].values()):
        out.append(("Each framework against the mean of the others on the same seed", others_table(doc)))
    return out


def text(doc: dict[str, Any]) -> str:
    """What compare.py prints after a --seeds run."""
    parts = [table.text(*summary_table(doc))]
    for title, (columns, rows) in sections(doc):
        parts += ["", title, table.text(columns, rows)]
    verdict = doc["parity"]
    if verdict["checks"]:
        parts += ["", f"Parity on every seed ({verdict['note']})", table.text(*table.checks_table(verdict["checks"]))]
    return "\n".join(parts)


def results_markdown(doc: dict[str, Any]) -> str:
    """report.md's Results section: mean ± std per framework, then every run with its seed."""
    columns, rows = summary_table(doc)
    run_columns, _ = table.runs_table(doc)
    every = [[str(r["seed"]), *table.run_row(doc, r)] for r in doc["runs"]]
    return "\n\n".join(
        [
            "Mean ± std over the seeds the statistics used.",
            table.markdown(columns, rows),
            "Every run:",
            table.markdown(("seed", *run_columns), every),
        ]
    )


def statistics_markdown(doc: dict[str, Any]) -> str:
    """report.md's section on the seeds: each table with its title, then per-seed directories."""
    parts = ["### Across seeds"]
    for title, (columns, rows) in sections(doc):
        parts += [f"**{title}**", table.markdown(columns, [[table_cell(c) for c in r] for r in rows])]
    dirs = ", ".join(f"`{item['dir']}/`" for item in doc["seeds"])
    parts.append(f"Each seed's probes, weights, logs and results.json: {dirs} (`compare.py --report DIR/seed-N`).")
    return "\n\n".join(parts)


def table_cell(value: str) -> str:
    return " ".join(str(value).split())
