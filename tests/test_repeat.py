"""`python -m common.run.repeat`: the counting of repeated runs, on a stand-in for compare.py.

The real repetition (50 runs per engine, mode and dtype) takes hours and is never part of the
suite; here a tiny script plays compare.py, failing where told, to check what is counted and kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from common.run import repeat

# Plays compare.py: writes results.json with pytorch failing in float64 on odd runs, or no result at all.
STAND_IN = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
dtype, run = args[args.index("--dtype") + 1], int(out.name.rsplit("-", 1)[1])
if "--processes" in args and run == 2:
    sys.exit(3)  # a crash before any result
out.mkdir(parents=True)
bad = dtype == "float64" and run % 2 == 1
error = "rank 1 killed by SIGABRT" if bad else ""
runs = [{"framework": "pytorch", "status": "failed" if bad else "ok", "error": error}]
runs.append({"framework": "jax", "status": "ok"})
checks = [{"name": "test loss", "passed": not (dtype == "float32" and run == 3)}]
(out / "results.json").write_text(json.dumps({"runs": runs, "parity": {"checks": checks}}))
sys.exit(1 if bad else 0)
"""


def test_repeated_runs_are_counted_and_failures_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "compare.py"
    script.write_text(STAND_IN)
    real = repeat.command
    monkeypatch.setattr(repeat, "command", lambda *a: [sys.executable, str(script), *real(*a)[2:]])
    plan = repeat.Plan(runs=3, frameworks=("pytorch", "jax"), out=tmp_path / "rep")
    counts = repeat.run(plan)
    assert counts["pytorch", "devices", "float64", "failed"] == 2 and counts["pytorch", "devices", "float64", "ok"] == 1
    assert counts["pytorch", "devices", "float32", "ok"] == 3
    assert counts["jax", "processes", "float32", "failed"] == 1  # run 2 left no result: a failure for both
    lines = (tmp_path / "rep" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 2 * 2 * 2  # runs x modes x dtypes x frameworks
    assert json.loads(lines[2]) == {
        "run": 1,
        "mode": "devices",
        "dtype": "float64",
        "framework": "pytorch",
        "status": "failed",
        "error": "rank 1 killed by SIGABRT",
        "failed_checks": [],
        "seconds": json.loads(lines[2])["seconds"],
    }
    kept = sorted(p.name for p in (tmp_path / "rep").iterdir() if p.is_dir())
    failed = ["devices-float32-3", "devices-float64-1", "devices-float64-3", "processes-float32-2"]
    failed += ["processes-float32-3", "processes-float64-1", "processes-float64-2", "processes-float64-3"]
    assert kept == failed  # only runs where something failed, a parity check included
    assert (tmp_path / "rep" / "devices-float64-1" / "compare.txt").is_file()
    text = repeat.table(plan, counts)
    assert "pytorch     devices    float64     3   1       2              0" in text
    assert "jax         devices    float32     3   3       0              1" in text  # run 3's failed check


def test_the_command_is_a_small_run_of_every_framework(tmp_path: Path) -> None:
    plan = repeat.parse(["--runs", "2", "--modes", "processes", "--", "--train-limit", "2000"])
    cmd = repeat.command(plan, "processes", "float64", tmp_path)
    assert cmd[1].endswith("compare.py")
    assert cmd[2:] == [
        *repeat.SMALL,
        "--devices",
        "2",
        "--processes",
        "2",
        "--device",
        "cpu",
        "--dtype",
        "float64",
        "--frameworks",
        "pytorch,tensorflow,jax",
        "--train-limit",
        "2000",  # after SMALL's 600: the later option wins
        "--timeout",
        "900",
        "--out",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit):
        repeat.parse(["--modes", "gpus"])
