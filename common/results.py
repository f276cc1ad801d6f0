"""The result schema shared by every framework, and results.json's reading and writing.

results.json = {schema, task, config, environment, optimum (plane), runs, parity}; each run =
{framework, version, build, device, status (ok | failed | skipped | interrupted), error,
wall_seconds, peak_rss_mb} plus the task's numbers.
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
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a triptych results file (expected schema {SCHEMA!r})")
    missing = [k for k in REQUIRED if k not in doc]
    if missing:
        raise UserError(f"{path}: damaged results file, missing {', '.join(missing)}")
    if not isinstance(doc["runs"], list) or not all(
        isinstance(r, dict) and r.get("status") in STATUSES for r in doc["runs"]
    ):
        raise UserError(f"{path}: damaged results file, malformed runs")
    return doc
