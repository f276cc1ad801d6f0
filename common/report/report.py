"""report.md (paste into a GitHub issue) and curves.png, rendered from a results document.

Everything printed comes from the document itself, so `compare.py --report DIR` re-renders
a byte-identical report.md from results.json long after the run, on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import results, table
from common.bench.summary import summarise
from common.bench.tables import markdown_report
from common.io import atomic_write_bytes, atomic_write_text
from common.report import plots, seedreport
from common.results import mode
from common.verdict import parity

REPORT_NAME = "report.md"
CURVES_NAME = "curves.png"
BENCH_PLOT_NAME = "bench.png"


def write_report(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.md and, for training runs, curves.png into out_dir; return what was written."""
    out_dir = Path(out_dir)
    written = [out_dir / REPORT_NAME]
    atomic_write_text(written[0], render_markdown(doc))
    png = plots.render_curves(doc, config_line(doc))
    if png is not None:
        written.append(out_dir / CURVES_NAME)
        atomic_write_bytes(written[1], png)
    if bench_summary(doc) is not None:  # --benchmark: images/s against batch size
        written.append(out_dir / BENCH_PLOT_NAME)
        atomic_write_bytes(written[-1], plots.render_bench(bench_summary(doc)))
    return written


def bench_summary(doc: dict[str, Any]) -> dict[str, Any] | None:
    """bench.json's content, re-derived from results.json (a benchmark that recorded its cases)."""
    if mode(doc) != "benchmark" or "reference" not in doc:
        return None
    if not any(r.get("cases") for r in doc["runs"]):
        return None
    return summarise(doc)


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole report as Markdown; deterministic for a given document."""
    multi_seed = seedreport.is_multi_seed(doc)  # --seeds: mean ± std, every run, then the statistics
    sections = [
        f"## {title(doc)}",
        f"**Configuration:** {config_line(doc)}",
        "### Results\n\n" + (seedreport.results_markdown(doc) if multi_seed else runs_markdown(doc)),
    ]
    parallel = table.parallel_table(doc)
    if parallel:
        sections.append("### Data-parallel\n\n" + table.markdown(*parallel))
    if doc["task"] == "plane" and doc.get("optimum"):
        sections.append(optimum_line(doc["optimum"]))
    sections.append(parity_section(doc["parity"]))
    if multi_seed:
        sections.append(seedreport.statistics_markdown(doc))
    sections.append("### Environment\n\n" + "\n".join(f"- {line}" for line in environment_lines(doc["environment"])))
    return "\n\n".join(sections) + "\n"


def title(doc: dict[str, Any]) -> str:
    suffix = {"benchmark": " (benchmark)", "eval": " (scoring one checkpoint)"}.get(mode(doc), "")
    names = doc["config"].get("frameworks") or [r["framework"] for r in doc["runs"]]
    return f"triptych: {results.task_label(doc)}{suffix}: {' vs '.join(names)}"


def value(v: Any) -> str:
    """A config value as typed: shortest exact form for floats, 'all' for an unset limit."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        short = f"{v:g}"
        return short if float(short) == v else repr(float(v))
    return str(v)


def config_fields(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (label, value) pairs that matter for this kind of run, in reading order."""
    cfg = doc["config"]
    if doc["task"] == "plane":
        p = cfg["plane"]
        return [("lr", p["lr"]), ("steps", p["steps"]), ("dtype", p["dtype"]), ("seed", cfg.get("seed"))]
    m = cfg["mnist"]
    data = [("dataset", results.dataset(doc))]
    seed = ("seeds", seedreport.seed_text(cfg["seeds"])) if cfg.get("seeds") else ("seed", cfg.get("seed"))
    where = [seed, ("device", cfg.get("device")), ("profile", doc.get("profile"))]
    if mode(doc) == "eval":
        checkpoint = [("checkpoint", Path(m["eval_params"]).name), ("eval batch size", m.get("eval_batch_size"))]
        return [*data, *checkpoint, ("dtype", m["dtype"]), *where]
    training = [("batch size", m["batch_size"]), ("lr", m["lr"]), ("optimizer", optimizer(m))]
    numerics = [("dtype", m["dtype"]), ("init", m["init"])]
    if m.get("precision", "float32") != "float32" and mode(doc) != "benchmark":
        numerics.insert(1, ("precision", f"{m['precision']} mixed (float32 weights)"))
    if mode(doc) == "benchmark":
        b = cfg.get("bench", {})
        timing = [("warmup steps", b.get("warmup_steps")), ("timed", windows(b))]
        axes = [(label, ",".join(map(str, b[key]))) for label, key in BENCH_AXES if b.get(key)]
        axes += [("repeats", b.get("repeats"))]
        return [*data, *training[1:], *axes, *numerics, *timing, *where]
    limit = m["train_limit"] if m.get("train_limit") is not None else "all"
    ran_with = [("settings", cfg.get("settings"))]  # common.settings: "fastest" unless --settings defaults
    training_run = [("epochs", m["epochs"]), *training, *numerics, ("train limit", limit), *ran_with]
    return [*data, *training_run, *where, *parallel_fields(cfg)]


BENCH_AXES = (
    ("batch sizes", "batch_sizes"),
    ("settings", "settings"),
    ("precisions", "precisions"),
    ("compile", "compiles"),
    ("loops", "loops"),
)


def parallel_fields(cfg: dict[str, Any]) -> list[tuple[str, Any]]:
    """--devices N (and --processes P) when the run was data-parallel."""
    par = cfg.get("parallel") or {}
    if par.get("devices", 1) <= 1:
        return []
    form = f"{par['processes']} processes (multi-machine form)" if par.get("processes") else "single-machine form"
    return [("data-parallel", f"{par['devices']} devices, {form}")]


def optimizer(m: dict[str, Any]) -> str:
    if m.get("optimizer") == "sgd" and m.get("momentum") is not None:
        return f"sgd (momentum {value(m['momentum'])})"
    return str(m.get("optimizer"))


def windows(b: dict[str, Any]) -> str:
    return f"{value(b.get('windows'))} x {value(b.get('window_steps'))} steps"


def config_line(doc: dict[str, Any]) -> str:
    """The configuration in one line, so it survives being pasted anywhere."""
    return " · ".join(f"{label} {value(v)}" for label, v in config_fields(doc) if v is not None)


MAX_CELL = 300


def one_line(cell: str) -> str:
    """Table cells hold error messages too: a newline would break the table, a tensor dump drown it."""
    text = " ".join(str(cell).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def runs_markdown(doc: dict[str, Any]) -> str:
    if bench_summary(doc) is not None:
        return markdown_report(bench_summary(doc))
    columns, rows = benchmark_table(doc) if mode(doc) == "benchmark" else table.runs_table(doc)
    return table.markdown(columns, [[one_line(c) for c in r] for r in rows])


BENCH_SKIP = ("framework", "version", "build", "device", "status", "error")


def benchmark_table(doc: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Timing runs carry their own numbers: one column per scalar number any ok run reports."""
    ok = [r for r in doc["runs"] if r["status"] == "ok"]
    keys = [k for k in dict.fromkeys(k for r in ok for k in r) if k not in BENCH_SKIP and scalar(ok, k)]
    columns = ("framework", "version", "device", *(k.replace("_", " ") for k in keys))
    rows = []
    for r in doc["runs"]:
        head = [r["framework"], r.get("version") or "-", r.get("device") or "-"]
        if r["status"] != "ok":
            rows.append([*head, f"{r['status']}: {r.get('error', '')}"])
        else:
            rows.append(head + [table.num(r.get(k), ",.4g") for k in keys])
    return columns, rows


def scalar(runs: list[dict[str, Any]], key: str) -> bool:
    return all(isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) for r in runs if key in r)


def optimum_line(optimum: dict[str, float]) -> str:
    return (
        f"**Exact L1 optimum:** a = {optimum['a']:.5f}, b = {optimum['b']:.5f}, "
        f"loss = {optimum['loss']:.6f} (final losses above are measured against it)"
    )


def parity_section(verdict: dict[str, Any]) -> str:
    """'Parity: passed' only for agreement; otherwise FAILED, or what kept the runs from being compared."""
    status = parity.status_of(verdict)
    head = {parity.AGREE: "passed", parity.DISAGREE: "FAILED", parity.UNDETERMINED: "undetermined"}.get(
        status, "not compared"
    )
    lines = [f"### Parity: {head}", f"**Verdict:** {parity.headline(verdict)}"]
    if verdict.get("note"):
        lines.append(verdict["note"])
    if verdict.get("stages"):
        lines.append(f"Stages: {table.STAGES_TITLE} (common/stages.py, common/loop.py):")
        lines.append(table.markdown(*table.stages_table(verdict["stages"])))
    if verdict["checks"]:
        lines.append(table.markdown(*table.checks_table(verdict["checks"])))
    else:
        lines.append("No parity checks were run.")
    return "\n\n".join(lines)


def environment_lines(env: dict[str, Any]) -> list[str]:
    extensions = " ".join(env.get("vector_extensions") or []) or "not recorded"
    lines = [
        f"python: {env.get('python', '-')}",
        f"os: {env.get('os', '-')}",
        f"cpu: {env.get('cpu', '-')} ({value(env.get('cores'))} cores, {value(env.get('threads'))} threads used)",
        f"vector extensions: {extensions}",
        f"gpus: {gpus(env.get('gpus') or [])}",
    ]
    for name, fw in (env.get("frameworks") or {}).items():
        lines.append(f"{name}: {fw.get('version') or '-'} (build: {fw.get('build') or 'unknown'})")
        if fw.get("setup"):  # what it saw at the start (compare.py --check-setup's line)
            lines.append(
                f"{name} sees: {', '.join(fw['setup']['devices'])}{table.no_gpu_note(fw['setup'].get('no_gpu'))}"
            )
        for settings_name, k in (fw.get("kernels") or {}).items():
            lines.append(f"{name} kernels with {settings_name} settings: {kernels_line(k)}")
    return lines


def kernels_line(k: dict[str, Any]) -> str:
    """'oneDNN, 2 threads (TF_ENABLE_ONEDNN_OPTS=1)': what a framework reported at run time."""
    env = " ".join(f"{key}={v}" for key, v in (k.get("env") or {}).items())
    flags = k.get("xla_flags")
    extra = "; ".join(filter(None, [env, f"XLA_FLAGS={flags}" if flags else ""]))
    return f"{k.get('library', 'unknown')}, {value(k.get('threads'))} threads" + (f" ({extra})" if extra else "")


def gpus(items: list[dict[str, str]]) -> str:
    if not items:
        return "none"
    return "; ".join(f"{g.get('name', '?')} (driver {g.get('driver', '?')}, {g.get('memory', '?')})" for g in items)
