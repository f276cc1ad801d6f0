"""Side-by-side tables of a results document, as terminal text or Markdown."""

from __future__ import annotations

from typing import Any

PLANE_COLUMNS = ("framework", "version", "device", "a", "b", "final loss", "above optimum", "seconds")
MNIST_COLUMNS = (
    "framework",
    "version",
    "device",
    "final train loss",
    "test loss",
    "test accuracy",
    "train s",
    "images/s",
)
EVAL_COLUMNS = ("framework", "version", "device", "test loss", "test accuracy")
CHECK_COLUMNS = ("check", "value", "tolerance", "result", "worst pair")


def num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def run_row(doc: dict[str, Any], run: dict[str, Any]) -> list[str]:
    head = [run["framework"], run.get("version") or "-", run.get("device") or "-"]
    if run["status"] != "ok":
        return [*head, f"{run['status']}: {run.get('error', '')}"]
    if doc["task"] == "plane":
        gap = run["final_loss"] / doc["optimum"]["loss"] - 1
        return [
            *head,
            f"{run['a']:.5f}",
            f"{run['b']:.5f}",
            f"{run['final_loss']:.6f}",
            f"{100 * gap:.3f}%",
            f"{run['wall_seconds']:.1f}",
        ]
    if doc["config"]["mnist"].get("eval_params"):
        return [*head, f"{run['test_loss']:.5f}", f"{100 * run['test_accuracy']:.2f}%"]
    return [
        *head,
        f"{run['final_loss']:.5f}",
        f"{run['test_loss']:.5f}",
        f"{100 * run['test_accuracy']:.2f}%",
        f"{run['train_seconds']:.1f}",
        num(run.get("images_per_second"), ",.0f"),
    ]


def runs_table(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    if doc["task"] == "plane":
        columns = PLANE_COLUMNS
    elif doc["config"]["mnist"].get("eval_params"):
        columns = EVAL_COLUMNS
    else:
        columns = MNIST_COLUMNS
    return columns, [run_row(doc, r) for r in doc["runs"]]


def checks_table(checks: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[str]]]:
    rows = [
        [
            c["name"],
            f"{c['value']:.3g}",
            f"{c['tolerance']:.3g}",
            "pass" if c["passed"] else "FAIL",
            c.get("detail", ""),
        ]
        for c in checks
    ]
    return CHECK_COLUMNS, rows


def text(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    """Aligned columns; a row shorter than the header (a failed run) runs on past them in its last cell.

    Only that last cell is left out of the widths: the cells before it (framework, version, device)
    are sized like every other row's, so a table of failed runs lines up as well.
    """
    sized = [r if len(r) == len(columns) else r[:-1] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in sized if i < len(r)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip())
    return "\n".join(lines)


def markdown(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = r + [""] * (len(columns) - len(r))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# --- Data-parallel runs (--devices N): how each engine ran ---

PARALLEL_COLUMNS = (
    "framework",
    "engine",
    "collective backend",
    "launcher",
    "processes",
    "devices",
    "per-replica batch",
)


def parallel_table(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]] | None:
    """One row per framework that trained data-parallel; None when none did."""
    runs = [r for r in doc["runs"] if r.get("engine")]
    if not runs:
        return None
    keys = ("engine", "collective_backend", "launcher", "processes", "devices", "per_replica_batch")
    return PARALLEL_COLUMNS, [[r["framework"], *(str(r.get(k, "-")) for k in keys)] for r in runs]


def summary_line(run: dict[str, Any]) -> str:
    """One line when a framework finishes: its status and its headline number."""
    head = f"{run['framework']:>10}: {run['status']}"
    if run["status"] != "ok":
        return f"{head}: {run.get('error', '')}"
    parts = [head]
    if "test_accuracy" in run:
        parts.append(f"test accuracy {100 * run['test_accuracy']:.2f}%, test loss {run['test_loss']:.4f}")
    elif "final_loss" in run:
        parts.append(f"final loss {run['final_loss']:.6f}")
    parts.append(f"{run.get('wall_seconds', 0):.1f} s")
    return ", ".join(parts)


def setup_line(run: dict[str, Any], short: bool = False) -> str:
    """One line per framework from its worker's `setup` (compare.py --check-setup; `short` at the start of a run).

    Its version and build, the devices it sees, the one it runs on and the convolutions' kernels; where it runs on
    the CPU of a machine with an NVIDIA GPU, why, and the command that fixes it.
    """
    head = f"{run['framework']:>10}: "
    found = run.get("setup")
    if found is None:
        return f"{head}{run['status']}, {run.get('error', '')}"
    kernels = found["kernels"] + (f" (CPU with {found['vectors']})" if found.get("vectors") else "")
    if short:
        text = f"{head}{run['version']} on {run['device']}, {kernels}"
    else:
        seen = ", ".join(found["devices"])
        text = f"{head}{run['version']} ({run['build']}); sees {seen}; runs on {run['device']}; kernels {kernels}"
    return text + no_gpu_note(found.get("no_gpu"))


def no_gpu_note(missing: dict[str, Any] | None) -> str:
    """'; no GPU: <reason>; fix: <command>' where a framework ran on the CPU of a machine with a GPU, else ''."""
    if not missing:
        return ""
    return f"; no GPU: {missing['reason']}" + (f"; fix: {missing['fix']}" if missing.get("fix") else "")


# --- The float64 stages and the loop (common.stages): a row per stage, a column per pair of frameworks ---

STAGES_TITLE = "the float64 stages from the shared start on the run's first batches, the loop over every step exactly"


def stages_table(stages: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Each pair's largest difference per stage; where a pair parts, where first and by how much. The loop's
    row also names each framework whose loop departs from the recipe, in a column of its own."""
    pairs = list(stages[0]["pairs"]) if stages else []
    recipe = any("recipe" in stage for stage in stages)
    rows = []
    for stage in stages:
        cells = [cell(stage["stage"], stage["pairs"][pair]) for pair in pairs]
        if recipe:
            cells.append(against_recipe(stage))
        rows.append([stage["stage"], *cells, f"{stage['tolerance']:.0e}" if stage["tolerance"] else "exact"])
    return ("stage", *pairs, *(["against the recipe"] if recipe else []), "tolerance"), rows


def cell(stage: str, pair: dict[str, Any]) -> str:
    """A pair's cell: its largest difference, or where it first parts and by how much (the loop: in steps)."""
    if stage == "loop":
        return "identical" if pair["passed"] else f"PARTS at {pair['where']} ({pair['value']:.0f} steps)"
    return f"{pair['value']:.2g}" if pair["passed"] else f"PARTS at {pair['where']} ({pair['value']:.2g})"


def against_recipe(stage: dict[str, Any]) -> str:
    """The loop row's last cell: 'agree', or each framework that departs from the recipe, where first."""
    if "recipe" not in stage:
        return "-"
    departed = stage["recipe"]
    return "; ".join(f"{name} PARTS at {d['where']}" for name, d in departed.items()) or "all agree"
