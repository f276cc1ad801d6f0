"""The result schema shared by every framework, and results.json's reading and writing.

results.json = {schema, task, config, environment, optimum (plane), runs, parity}; each run =
{framework, version, build, device, setup, status (ok | failed | skipped | interrupted), error,
wall_seconds, peak_rss_mb} plus the task's numbers; setup = {devices (every device the framework saw), kernels,
vectors (on a CPU), no_gpu: {reason, fix} where it ran on the CPU of a machine with an NVIDIA GPU}, as the run's
first lines and `compare.py --check-setup` print it. A --seeds run (common.verdict.seeds) adds `seed` to
every run, `seeds` (each seed's directory and verdict) and `statistics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.io import atomic_write_json

SCHEMA = "triptych/results/1"
STATUSES = ("ok", "failed", "skipped", "interrupted")
REQUIRED = ("schema", "task", "config", "environment", "runs", "parity")


def dataset(doc: dict[str, Any]) -> str | None:
    """The CNN's dataset ('mnist' in results written before there was a choice); None for the plane."""
    return doc["config"].get("mnist", {}).get("dataset", "mnist") if doc["task"] == "mnist" else None


def task_label(doc: dict[str, Any]) -> str:
    """'mnist', or 'mnist on fashion-mnist': the task, and its data where that is not MNIST itself."""
    name = dataset(doc)
    return doc["task"] if name in (None, "mnist") else f"{doc['task']} on {name}"


def not_run(framework: str, status: str, error: str) -> dict[str, Any]:
    """The entry of a framework that did not produce numbers."""
    return {"framework": framework, "status": status, "error": error, "device": None, "version": None}


def build(
    task: str,
    config: dict[str, Any],
    environment: dict[str, Any],
    runs: list[dict[str, Any]],
    parity: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    env = dict(environment)
    env["frameworks"] = {
        r["framework"]: {"version": r.get("version"), "build": r.get("build")} for r in runs if r.get("version")
    }
    for r in runs:  # what each framework saw and used (a run's first lines)
        if r.get("setup") and r["framework"] in env["frameworks"]:
            env["frameworks"][r["framework"]]["setup"] = r["setup"]
    for r in runs:  # the kernel library each framework reported, per settings (a benchmark runs both)
        if r.get("kernels") and r["framework"] in env["frameworks"]:
            env["frameworks"][r["framework"]].setdefault("kernels", {})[r["kernels"]["settings"]] = r["kernels"]
    return {
        "schema": SCHEMA,
        "task": task,
        "config": config,
        "environment": env,
        **extra,
        "runs": runs,
        "parity": parity,
    }


def write(out_dir: Path, doc: dict[str, Any]) -> Path:
    path = out_dir / "results.json"
    atomic_write_json(path, doc)
    return path


def load(path: Path) -> dict[str, Any]:
    """Read a results.json, refusing anything that is not one of ours, in one line."""
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a triptych results file (expected schema {SCHEMA!r})")
    try:
        validate(doc)
    except Malformed as exc:
        raise UserError(f"{path}: damaged results file, {exc}") from None
    return doc


def mode(doc: dict[str, Any]) -> str:
    """'plane', 'mnist', 'eval' (--eval-params) or 'benchmark': what a report has to show."""
    if doc["task"] == "plane":
        return "plane"
    if doc["config"].get("benchmark"):
        return "benchmark"
    if (doc["config"].get("mnist") or {}).get("eval_params"):
        return "eval"
    return "mnist"


# What the report, the tables and the plots read, per kind of run: a results file is checked
# against this before anything is rendered, so a damaged one is named, never a KeyError.
CONFIG_FIELDS = {
    "plane": ("plane.lr", "plane.steps", "plane.dtype"),
    "mnist": ("mnist.epochs", "mnist.batch_size", "mnist.lr", "mnist.optimizer", "mnist.dtype", "mnist.init"),
    "eval": ("mnist.eval_params", "mnist.dtype"),
    "benchmark": ("mnist.batch_size", "mnist.lr", "mnist.optimizer", "mnist.dtype", "mnist.init"),
}
RUN_NUMBERS = {
    "plane": ("a", "b", "final_loss", "wall_seconds"),
    "mnist": ("final_loss", "test_loss", "test_accuracy", "train_seconds"),
    "eval": ("test_loss", "test_accuracy"),
    "benchmark": (),
}
RUN_SERIES = {"plane": ("losses",), "mnist": ("step_losses",), "eval": (), "benchmark": ()}
CHECK_FIELDS = (("name", str), ("value", (int, float)), ("tolerance", (int, float)), ("passed", bool))


class Malformed(Exception):
    """A field the renderers need is missing or of the wrong type; the message names it."""


def field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """obj[key], checked to be of `kind` (a bool is never taken for a number)."""
    path = f"{where}.{key}" if where else key
    if not isinstance(obj, dict) or key not in obj:
        raise Malformed(f"missing {path}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Malformed(f"{path} is not {kind_name(kind)}")
    return value


def kind_name(kind: type | tuple[type, ...]) -> str:
    if kind == (int, float):
        return "a number"
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer"}
    none = type(None)
    names |= {
        (str, none): "a string or null",
        (int, float, none): "a number or null",
        (list, none): "a list or null",
        (int, none): "an integer or null",
        (dict, none): "an object or null",
    }
    return names.get(kind, str(kind))


def validate(doc: dict[str, Any]) -> None:
    """Raise Malformed naming the first field a report of this document would miss."""
    for key, kind in (("task", str), ("config", dict), ("environment", dict), ("runs", list), ("parity", dict)):
        field(doc, key, kind, "")
    if doc["task"] not in ("plane", "mnist"):
        raise Malformed(f"task {doc['task']!r} is not plane or mnist")
    kind = mode(doc)
    for dotted in CONFIG_FIELDS[kind]:
        section, key = dotted.split(".")
        field(field(doc["config"], section, dict, "config"), key, (int, float, str, type(None)), f"config.{section}")
    if kind == "plane":
        for key in ("a", "b", "loss"):
            field(field(doc, "optimum", dict, ""), key, (int, float), "optimum")
    for i, run in enumerate(doc["runs"]):
        validate_run(run, kind, f"runs[{i}]")
    validate_checks(doc["parity"], "parity")
    if "statistics" in doc:
        validate_seeds(doc)


def validate_checks(verdict: Any, where: str) -> None:
    field(verdict, "passed", bool, where)
    for i, check in enumerate(field(verdict, "checks", list, where)):
        for key, check_kind in CHECK_FIELDS:
            field(check, key, check_kind, f"{where}.checks[{i}]")


def validate_run(run: Any, kind: str, where: str) -> None:
    field(run, "framework", str, where)
    if "setup" in run:  # results written before it was recorded have none
        validate_setup(run["setup"], f"{where}.setup")
    if field(run, "status", str, where) not in STATUSES:
        raise Malformed(f"{where}.status {run['status']!r} is not one of {', '.join(STATUSES)}")
    if run["status"] != "ok":
        return
    for key in RUN_NUMBERS[kind]:
        field(run, key, (int, float), where)
    for key in RUN_SERIES[kind]:
        series = field(run, key, list, where)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in series):
            raise Malformed(f"{where}.{key} holds something other than numbers")


def validate_setup(setup: Any, where: str) -> None:
    """What the setup line reads: the devices a framework saw, its kernels, and why it saw no GPU where it did not."""
    devices = field(setup, "devices", list, where)
    if not all(isinstance(d, str) for d in devices):
        raise Malformed(f"{where}.devices holds something other than device names")
    field(setup, "kernels", str, where)
    if setup.get("no_gpu") is not None:
        field(setup["no_gpu"], "reason", str, f"{where}.no_gpu")
        field(setup["no_gpu"], "fix", (str, type(None)), f"{where}.no_gpu")


# --seeds documents: what common.report.seedreport and common.report.seedplots read, beyond a single run's fields.
NUMBER = (int, float)
MAYBE_NUMBER = (int, float, type(None))
MAYBE_LIST = (list, type(None))
SUMMARY = (("n", int), ("mean", MAYBE_NUMBER), ("std", MAYBE_NUMBER), ("ci95", MAYBE_LIST))
PAIR = (
    ("a", str),
    ("b", str),
    ("n", int),
    ("mean", MAYBE_NUMBER),
    ("ci90", MAYBE_LIST),
    ("welch_ci90", MAYBE_LIST),
    ("verdict", str),
    ("seeds_needed", (int, type(None))),
)
VARIATION = (("between_seeds", MAYBE_NUMBER), ("between_frameworks", MAYBE_NUMBER), ("ratio", MAYBE_NUMBER))
OTHERS = (*SUMMARY, ("above", int), ("below", int), ("direction", str))
REACHED = (*SUMMARY, ("seeds", int), ("verdict", str))


def fields(obj: Any, spec: tuple[tuple[str, Any], ...], where: str) -> None:
    for key, kind in spec:
        field(obj, key, kind, where)


def validate_seeds(doc: dict[str, Any]) -> None:
    """Every run has its seed, every seed its verdict, and the statistics what the renderers read."""
    for i, run in enumerate(doc["runs"]):
        field(run, "seed", int, f"runs[{i}]")
    for i, item in enumerate(field(doc, "seeds", list, "")):
        fields(item, (("seed", int), ("dir", str)), f"seeds[{i}]")
        validate_checks(field(item, "parity", dict, f"seeds[{i}]"), f"seeds[{i}].parity")
    stats = field(doc, "statistics", dict, "")
    fields(stats, (("seeds", list), ("used", list), ("excluded", list), ("frameworks", list)), "statistics")
    ok = {(r["seed"], r["framework"]) for r in doc["runs"] if r["status"] == "ok"}
    missing = [(s, f) for s in stats["used"] for f in stats["frameworks"] if (s, f) not in ok]
    if missing:
        raise Malformed(f"statistics.used names seed {missing[0][0]}, which {missing[0][1]} did not finish")
    metrics = field(stats, "metrics", dict, "statistics")
    for key in ("accuracy", "loss"):
        metric = field(metrics, key, dict, "statistics.metrics")
        validate_metric(metric, stats["frameworks"], f"statistics.metrics.{key}")
    target = field(stats, "target", (dict, type(None)), "statistics")
    if target is not None:
        field(target, "accuracy_points", NUMBER, "statistics.target")
        per = field(target, "per_framework", dict, "statistics.target")
        for f in stats["frameworks"]:
            fields(field(per, f, dict, "statistics.target.per_framework"), REACHED, f"statistics.target.{f}")


def validate_metric(metric: Any, frameworks: list[str], where: str) -> None:
    fields(metric, (("label", str), ("unit", str), ("margin", NUMBER), ("variation", dict)), where)
    fields(metric["variation"], VARIATION, f"{where}.variation")
    per = field(metric, "per_framework", dict, where)
    for f in frameworks:
        fields(field(per, f, dict, f"{where}.per_framework"), SUMMARY, f"{where}.per_framework.{f}")
    for j, pair in enumerate(field(metric, "pairs", list, where)):
        fields(pair, PAIR, f"{where}.pairs[{j}]")
    for f, entry in field(metric, "against_others", dict, where).items():
        fields(entry, OTHERS, f"{where}.against_others.{f}")
