"""Run the same small data-parallel comparison many times and count the runs that fail.

A failure that comes by chance (a replica aborting now and then, issue 29) shows only in
repetition: `python -m common.run.repeat --runs 50` runs compare.py 50 times in each engine's
two forms (`--devices 2`, and `--devices 2 --processes 2`) and in float32 and float64, each run
as small as still trains and tears down every engine, and prints how many ended without a
result. It never runs inside `make test` (600 runs take hours on 2 cores); docs/distributed.md
has the counts measured with it.

Each run's framework entries are appended to <out>/runs.jsonl as they finish, so an interrupted
repetition keeps its counts; a run's directory is kept only where some framework failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The smallest run that still exercises every step of a data-parallel run: the float64 stages, the engine's
# first-step probe, ten steps of training, rank 0's evaluation, every replica leaving the group.
SMALL = ("--task", "mnist", "--train-limit", "600", "--epochs", "1", "--batch-size", "60")
STATUSES = ("ok", "failed", "skipped", "interrupted")  # a framework entry's status in results.json
# Two devices simulated on the CPU, as the reproducer ran (the device named: never left to the machine).
MODES = {
    "devices": ("--devices", "2", "--device", "cpu"),
    "processes": ("--devices", "2", "--processes", "2", "--device", "cpu"),
}


@dataclass(frozen=True)
class Plan:
    """What to repeat: `runs` times each mode and dtype, all `frameworks` in one compare.py run."""

    runs: int = 50
    frameworks: tuple[str, ...] = ("pytorch", "tensorflow", "jax")
    modes: tuple[str, ...] = tuple(MODES)
    dtypes: tuple[str, ...] = ("float32", "float64")
    extra: tuple[str, ...] = ()  # more compare.py options, after SMALL (a later option wins)
    out: Path = Path("runs/repeat")
    timeout: float = 900.0


def command(plan: Plan, mode: str, dtype: str, out: Path) -> list[str]:
    """The compare.py command of one run."""
    options = [*SMALL, *MODES[mode], "--dtype", dtype, "--frameworks", ",".join(plan.frameworks), *plan.extra]
    return [sys.executable, str(ROOT / "compare.py"), *options, "--timeout", f"{plan.timeout:g}", "--out", str(out)]


def outcomes(out: Path, frameworks: tuple[str, ...], code: int) -> list[dict[str, Any]]:
    """Each framework's status and error in one run, and the run's parity checks that failed (the engines
    against one device, and the frameworks against each other); a run that left no results.json failed for all."""
    try:
        doc = json.loads((out / "results.json").read_text())
        runs = {r["framework"]: r for r in doc["runs"]}
        failed_checks = [c["name"] for c in doc["parity"]["checks"] if not c["passed"]]
    except (OSError, ValueError, KeyError):
        runs, failed_checks = {}, []
    missing = {"status": "failed", "error": f"compare.py exited {code} without a result"}
    found = [{"framework": f, **{k: runs.get(f, missing).get(k, "") for k in ("status", "error")}} for f in frameworks]
    return [{**e, "failed_checks": failed_checks} for e in found]


def run(plan: Plan) -> Counter:
    """Every run of the plan, one after another (the modes and dtypes interleaved); the count of
    (framework, mode, dtype, status)."""
    counts: Counter = Counter()
    plan.out.mkdir(parents=True, exist_ok=True)
    with open(plan.out / "runs.jsonl", "a") as log:
        for i in range(1, plan.runs + 1):
            for mode in plan.modes:
                for dtype in plan.dtypes:
                    for record in one_run(plan, i, mode, dtype):
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                        counts[record["framework"], mode, dtype, record["status"]] += 1
                        counts[record["framework"], mode, dtype, "checks failed"] += bool(record["failed_checks"])
    return counts


def one_run(plan: Plan, i: int, mode: str, dtype: str) -> list[dict[str, Any]]:
    """compare.py once; a record per framework. A failed run keeps its directory and what compare.py printed."""
    out = plan.out / f"{mode}-{dtype}-{i}"
    start = time.monotonic()
    proc = subprocess.run(command(plan, mode, dtype, out), cwd=ROOT, capture_output=True)
    seconds = round(time.monotonic() - start, 1)
    found = outcomes(out, plan.frameworks, proc.returncode)
    if all(e["status"] == "ok" and not e["failed_checks"] for e in found):
        shutil.rmtree(out, ignore_errors=True)  # only a failure's directory is worth keeping
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.txt").write_bytes(proc.stdout + proc.stderr)
        for e in found:
            if e["status"] != "ok" or e["failed_checks"]:
                what = f"{e['status']}: {e['error']}" if e["status"] != "ok" else f"checks failed: {e['failed_checks']}"
                print(f"run {i} {mode} {dtype}: {e['framework']} {what}", flush=True)
    return [{"run": i, "mode": mode, "dtype": dtype, **e, "seconds": seconds} for e in found]


def table(plan: Plan, counts: Counter) -> str:
    """One line per framework, mode and dtype: runs, ok, failed, and runs in which a parity check failed."""
    lines = ["framework   mode       dtype    runs  ok  failed  checks failed"]
    for f in plan.frameworks:
        for mode in plan.modes:
            for dtype in plan.dtypes:
                ok, checks = counts[f, mode, dtype, "ok"], counts[f, mode, dtype, "checks failed"]
                total = sum(n for (g, m, d, s), n in counts.items() if (g, m, d) == (f, mode, dtype) and s in STATUSES)
                lines.append(f"{f:<11} {mode:<10} {dtype:<8} {total:>4}  {ok:>2}  {total - ok:>6}  {checks:>13}")
    return "\n".join(lines)


def parse(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m common.run.repeat", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=Plan.runs, help="runs of each mode and dtype (default 50)")
    parser.add_argument("--frameworks", default=",".join(Plan.frameworks))
    parser.add_argument("--modes", default=",".join(Plan.modes), help="devices (one process), processes, or both")
    parser.add_argument("--dtypes", default=",".join(Plan.dtypes))
    parser.add_argument("--out", type=Path, default=Path(f"runs/repeat-{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("extra", nargs="*", help="more compare.py options, after --")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    if args.runs < 1 or not modes or set(modes) - set(MODES):
        parser.error(f"--runs must be positive and --modes one or more of {', '.join(MODES)}")
    split = lambda text: tuple(x for x in text.split(",") if x)  # noqa: E731
    return Plan(args.runs, split(args.frameworks), modes, split(args.dtypes), tuple(args.extra), args.out)


def main(argv: list[str] | None = None) -> int:
    """0 when every run of every framework ended with a result, 1 otherwise."""
    plan = parse(sys.argv[1:] if argv is None else argv)
    counts = run(plan)
    print(table(plan, counts))
    return int(any(n and status != "ok" for (_, _, _, status), n in counts.items()))


if __name__ == "__main__":
    raise SystemExit(main())
