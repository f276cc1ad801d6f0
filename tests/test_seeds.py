"""--seeds: the seed list, its one-line errors, the multi-seed verdict, its report, Ctrl-C, a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compare
from common import results
from common.config import Margins, MnistConfig, RunConfig
from common.errors import UserError
from common.report import report
from common.run import launch
from common.verdict import parity, seeds
from common.weights import mnist_init
from tests.conftest import ROOT, load_results, run_compare
from tests.test_report import ENVIRONMENT, PNG_MAGIC, mnist_run

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
TWO = ("pytorch", "jax")  # where the claim is about compare.py, not a framework
PASSING = [parity.check("initial logits on the first batch: max abs difference", 3e-7, 1e-5, "pytorch vs jax")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-4", (0, 1, 2, 3, 4)),
        ("0,1,2", (0, 1, 2)),
        (" 3 , 0-1 ", (3, 0, 1)),
        ("7", (7,)),
        ("4294967295", (2**32 - 1,)),
    ],
)
def test_seed_lists(text: str, expected: tuple[int, ...]) -> None:
    assert seeds.parse(text) == expected


def refused(capsys: pytest.CaptureFixture, *args: str) -> str:
    """compare.main in-process: exit 2 and exactly one line on stderr; return it."""
    try:
        code = compare.main([*args, "--quiet"])
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--seeds", "3-1"], "error: --seeds: '3-1' is not a seed list (use 0-4 or 0,1,2)"),
        (["--seeds", ""], "error: --seeds: '' is not a seed list (use 0-4 or 0,1,2)"),
        (["--seeds", "0,,2"], "error: --seeds: '0,,2' is not a seed list (use 0-4 or 0,1,2)"),
        (["--seeds", "zero"], "error: --seeds: 'zero' is not a seed list (use 0-4 or 0,1,2)"),
        (["--seeds", "0,1,2,2"], "error: --seeds: seed 2 appears twice"),
        (["--seeds", "0-3,2"], "error: --seeds: seed 2 appears twice"),
        (["--seeds", "0-100"], "error: --seeds: at most 100 seeds, got 101"),
        (["--seeds", "0-4000000000"], "error: --seeds: at most 100 seeds, got 4000000001"),
        (["--seeds=-1,2"], "error: --seeds: seeds must be between 0 and 4294967295, got -1"),
        (["--seeds", "0,4294967296"], "error: --seeds: seeds must be between 0 and 4294967295, got 4294967296"),
        (["--seeds", "0-4", "--margin-accuracy", "0"], "error: --margin-accuracy must be positive, got 0"),
        (["--seeds", "0-4", "--margin-loss", "-0.01"], "error: --margin-loss must be positive, got -0.01"),
        (["--seeds", "0-4", "--margin-accuracy", "nan"], "error: --margin-accuracy must be a finite number, got nan"),
        (
            ["--seed", "1", "--seeds", "0,1"],
            "error: argument --seeds: not allowed with argument --seed (see --help)",
        ),
        (["--seeds", "0-4", "--benchmark"], "error: --seeds repeats training and --benchmark times steps: choose one"),
        (
            ["--seeds", "0-4", "--devices", "2", "--device", "cpu"],
            "error: --seeds with --devices is not supported yet: check the engines on one --seed",
        ),
        (
            ["--task", "plane", "--seeds", "0-4"],
            "error: --seeds repeats MNIST training; the plane fit is float64 with identical paths in every "
            "framework, so one --seed shows its agreement",
        ),
    ],
)
def test_bad_seed_options_exit_2_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, args: list[str], line: str
) -> None:
    out = tmp_path / "out"
    assert refused(capsys, *args, "--out", str(out)) == line
    assert not out.exists()  # refused while the config was built


def test_eval_params_and_seeds_exclude_each_other(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "p.npz"
    np.savez(path, **mnist_init(0))
    assert refused(capsys, "--eval-params", str(path), "--seeds", "0,1") == (
        "error: --seeds repeats training and --eval-params scores one checkpoint: choose one"
    )


def test_a_bad_seed_list_from_the_shell_is_one_line_without_traceback() -> None:
    proc = run_compare("--seeds", "3-1", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: --seeds: '3-1' is not a seed list (use 0-4 or 0,1,2)\n"


def test_one_seed_is_a_single_run() -> None:
    """--seeds 5 is --seed 5: no seed directories, no statistics, today's output."""
    cfg = compare.build_config(compare.make_parser().parse_args(["--task", "plane", "--seeds", "5"]))
    assert cfg.seed == 5 and cfg.seeds == ()
    cfg = compare.build_config(compare.make_parser().parse_args(["--seeds", "2-4", "--margin-loss", "0.02"]))
    assert cfg.seed == 2 and cfg.seeds == (2, 3, 4)
    assert cfg.margins == Margins(accuracy_points=0.25, test_loss=0.02)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# Hand-built multi-seed documents: accuracies in points and test losses per seed and framework.
ACCURACY = {0: (98.90, 98.83, 98.91), 1: (98.95, 98.92, 98.94), 2: (98.75, 98.72, 98.80), 3: (98.86, 98.85, 98.88)}
LOSS = {0: (0.0322, 0.0328, 0.0328), 1: (0.0310, 0.0318, 0.0311), 2: (0.0345, 0.0350, 0.0339), 3: (0.033, 0.033, 0.034)}


def seed_runs(seed: int, shift: float = 0.0, failed: str = "") -> list[dict[str, Any]]:
    runs = []
    for i, f in enumerate(FRAMEWORKS):
        if f == failed:
            runs.append(results.not_run(f, "failed", "worker killed by SIGKILL (out of memory?)"))
            continue
        run = mnist_run(f, 0.0)
        run["test_accuracy"] = ACCURACY[seed][i] / 100 - (shift / 100 if f == "tensorflow" else 0.0)
        run["test_loss"] = LOSS[seed][i]
        run["params"] = f"params/{f}.npz"
        runs.append(run)
    return runs


def multi_doc(
    tmp_path: Path, seed_list: tuple[int, ...] = (0, 1, 2, 3), checks: list | None = None, **options: Any
) -> dict[str, Any]:
    """The top-level document common.verdict.seeds assembles, from hand-built runs and per-seed verdicts."""
    cfg = RunConfig(task="mnist", seeds=seed_list, out=str(tmp_path))
    done = []
    for s in seed_list:
        runs = seed_runs(s, shift=options.get("shift", 0.0), failed=options.get("failed", {}).get(s, ""))
        verdict = parity.verdict(checks or PASSING, runs, note="shared initial weights, float32, strict profile")
        done.append({"seed": s, "runs": runs, "parity": verdict})
    return seeds.assemble(cfg, ENVIRONMENT, done)


def pair(doc: dict[str, Any], metric: str, a: str, b: str) -> dict[str, Any]:
    return next(p for p in doc["statistics"]["metrics"][metric]["pairs"] if (p["a"], p["b"]) == (a, b))


def test_four_close_seeds_agree(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path)
    results.validate(doc)
    assert len(doc["runs"]) == 12 and [r["seed"] for r in doc["runs"][:4]] == [0, 0, 0, 1]
    assert doc["runs"][3]["params"] == "seed-1/params/pytorch.npz"
    assert [item["dir"] for item in doc["seeds"]] == ["seed-0", "seed-1", "seed-2", "seed-3"]
    accuracy = pair(doc, "accuracy", "tensorflow", "jax")
    assert accuracy["n"] == 4 and accuracy["mean"] == pytest.approx(-0.0525)  # (-0.08 - 0.02 - 0.08 - 0.03) / 4
    assert accuracy["verdict"] == "equivalent"
    assert doc["statistics"]["metrics"]["accuracy"]["per_framework"]["pytorch"]["mean"] == pytest.approx(98.865)
    assert doc["statistics"]["target"]["per_framework"]["tensorflow"]["seeds"] == 3  # 98.72 on seed 2
    assert parity.status_of(doc["parity"]) == parity.AGREE
    assert parity.headline(doc["parity"]) == (
        "AGREE: every pair equivalent within ±0.25 points of test accuracy and ±0.01 of test loss over 4 of 4 seeds"
    )
    assert compare.exit_code(doc) == 0


def test_a_framework_failing_on_one_seed_loses_only_that_seed(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path, failed={2: "jax"})
    stats = doc["statistics"]
    assert stats["used"] == [0, 1, 3] and stats["excluded"] == ["seed 2: jax failed"]
    assert pair(doc, "loss", "pytorch", "tensorflow")["n"] == 3
    assert [r["status"] for r in doc["runs"] if r["seed"] == 2] == ["ok", "ok", "failed"]
    assert "over 3 of 4 seeds" in parity.headline(doc["parity"])
    assert compare.exit_code(doc) == 1  # a requested run failed


def test_a_check_failing_on_one_seed_is_disagreement(tmp_path: Path) -> None:
    cfg = RunConfig(task="mnist", seeds=(0, 1), out=str(tmp_path))
    done = []
    for s, value in ((0, 3e-7), (1, 2e-4)):
        runs = seed_runs(s)
        check = parity.check("initial logits on the first batch: max abs difference", value, 1e-5, "pytorch vs jax")
        done.append({"seed": s, "runs": runs, "parity": parity.verdict([check], runs)})
    doc = seeds.assemble(cfg, ENVIRONMENT, done)
    [merged] = doc["parity"]["checks"]
    assert merged["value"] == 2e-4 and not merged["passed"] and merged["detail"] == "seed 1: pytorch vs jax"
    assert parity.headline(doc["parity"]) == (
        "DISAGREE: initial logits on the first batch: max abs difference failed (seed 1: pytorch vs jax)"
    )
    assert compare.exit_code(doc) == 1


def test_a_stage_parting_on_one_seed_is_named_as_in_a_single_run(tmp_path: Path) -> None:
    cfg = RunConfig(task="mnist", seeds=(0, 1), out=str(tmp_path))
    done = []
    for s, value in ((0, 1e-15), (1, 0.24)):
        runs = seed_runs(s)
        check = parity.check(parity.STAGE_CHECKS["update"], value, 1e-12, "pytorch vs jax at step 2")
        verdict = parity.verdict([check], runs)
        if value > 1e-12:  # what with_stages writes for a run whose update stage parted
            verdict["reason"] = "at the update: jax parts from pytorch and tensorflow at step 2"
        done.append({"seed": s, "runs": runs, "parity": verdict})
    doc = seeds.assemble(cfg, ENVIRONMENT, done)
    assert parity.headline(doc["parity"]) == (
        "DISAGREE at the update: jax parts from pytorch and tensorflow at step 2; seed 1"
    )


def test_a_port_that_loses_half_a_point_is_different(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path, shift=0.5)
    assert pair(doc, "accuracy", "pytorch", "tensorflow")["verdict"] == "different"
    assert pair(doc, "accuracy", "pytorch", "jax")["verdict"] == "equivalent"
    assert doc["statistics"]["metrics"]["accuracy"]["against_others"]["tensorflow"]["direction"] == "below"
    assert parity.headline(doc["parity"]).startswith(
        "DISAGREE: pytorch vs tensorflow test accuracy different over 4 of 4 seeds (+0.535 points, 95% interval"
    )
    assert compare.exit_code(doc) == 1


def test_two_noisy_seeds_are_undetermined(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path, seed_list=(0, 2), shift=0.1)
    noisy = pair(doc, "accuracy", "pytorch", "tensorflow")  # +0.17, +0.13: 90% interval +0.024 to +0.276
    assert noisy["verdict"] == "undetermined" and noisy["seeds_needed"] == 3
    status, reason = parity.status_of(doc["parity"]), doc["parity"]["reason"]
    assert status == parity.UNDETERMINED
    assert reason.startswith("agreement not shown over 2 of 2 seeds; about ")
    assert parity.headline(doc["parity"]).startswith("UNDETERMINED: agreement not shown")
    assert compare.exit_code(doc) == 1


def test_one_framework_is_not_compared_but_summarised(tmp_path: Path) -> None:
    cfg = RunConfig(task="mnist", frameworks=("jax",), seeds=(0, 1), out=str(tmp_path))
    done = [{"seed": s, "runs": seed_runs(s)[2:], "parity": parity.verdict([], seed_runs(s)[2:])} for s in (0, 1)]
    doc = seeds.assemble(cfg, ENVIRONMENT, done)
    assert parity.headline(doc["parity"]) == "NOT COMPARED: only jax was requested"
    assert doc["statistics"]["metrics"]["accuracy"]["pairs"] == []
    assert doc["statistics"]["metrics"]["accuracy"]["per_framework"]["jax"]["mean"] == pytest.approx(98.925)
    assert compare.exit_code(doc) == 0  # as a single run of one framework
    report.write_report(doc, tmp_path)
    assert "| jax | 2 | 98.925 |" in (tmp_path / "report.md").read_text()


def test_the_documented_accuracy_is_only_claimed_for_the_defaults(tmp_path: Path) -> None:
    cfg = RunConfig(task="mnist", seeds=(0, 1), out=str(tmp_path), mnist=MnistConfig(train_limit=1000))
    done = [{"seed": s, "runs": seed_runs(s), "parity": parity.verdict(PASSING, seed_runs(s))} for s in (0, 1)]
    assert seeds.assemble(cfg, ENVIRONMENT, done)["statistics"]["target"] is None


def test_report_of_a_multi_seed_run(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path, failed={3: "tensorflow"})
    written = report.write_report(doc, tmp_path)
    assert [p.name for p in written] == ["report.md", "curves.png"]
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
    text = (tmp_path / "report.md").read_text()
    assert "· seeds 0-3 ·" in text.splitlines()[2]
    for line in (
        "| pytorch | 2.13.0+cpu | cpu | 4 of 4 | 98.87 ± 0.10 | 0.0326 ± 0.0018 |",
        "| tensorflow | 2.21.0 | cpu | 3 of 4 |",
        "| 2 | 98.75 | 98.72 | 98.80 | 0.0345 | 0.0350 | 0.0339 | agree |",
        "| 3 | 98.86 | failed | 98.88 |",
        "**Per seed (statistics over 3 of 4 seeds: 0-2; left out: seed 3: tensorflow failed)**",
        "| pytorch - tensorflow | test accuracy | 3 | +0.043 | +0.004 to +0.082 | -0.135 to +0.221 | ±0.25 |",
        "| test accuracy | 0.092 | 0.035 | seed, 2.6x |",
        "| tensorflow | -0.052 | -0.114 to +0.011 | 0 / 3 | neither |",
        "| 3 | tensorflow | - | - | failed: worker killed by SIGKILL (out of memory?) |",
        "2 of 3 seeds; mean interval spans 98.8",
    ):
        assert line in text, line
    assert "`seed-0/`, `seed-1/`, `seed-2/`, `seed-3/`" in text


def test_report_rerenders_a_multi_seed_run_and_refuses_a_damaged_one(tmp_path: Path) -> None:
    doc = multi_doc(tmp_path)
    report.write_report(doc, tmp_path)
    first = (tmp_path / "report.md").read_bytes()
    results.write(tmp_path, doc)
    (tmp_path / "report.md").unlink()
    proc = run_compare("--report", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.md").read_bytes() == first
    del doc["statistics"]["metrics"]["loss"]["pairs"][1]["verdict"]
    results.write(tmp_path, doc)
    with pytest.raises(
        UserError, match=r"damaged results file, missing statistics\.metrics\.loss\.pairs\[1\]\.verdict"
    ):
        results.load(tmp_path)
    doc["statistics"]["used"].append(9)
    del doc["statistics"]["metrics"]["loss"]
    results.write(tmp_path, doc)
    with pytest.raises(UserError, match=r"statistics\.used names seed 9, which pytorch did not finish"):
        results.load(tmp_path)


def test_ctrl_c_keeps_the_finished_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed 0 finishes, Ctrl-C during seed 1's tensorflow, seed 2 never starts: exit 130, all recorded."""

    def fake_run_all(cfg: RunConfig) -> list[dict[str, Any]]:
        if cfg.seed == 0:
            return seed_runs(0)
        raise launch.Interrupted(
            [*seed_runs(1)[:1], *(results.not_run(f, "interrupted", "Ctrl-C") for f in FRAMEWORKS[1:])]
        )

    monkeypatch.setattr(launch, "run_all", fake_run_all)
    monkeypatch.setattr(parity, "mnist_parity", lambda cfg, runs: parity.verdict(PASSING, runs))
    out = tmp_path / "run"
    assert compare.main(["--seeds", "0-2", "--out", str(out), "--quiet"]) == 130
    doc = load_results(out)
    results.validate(doc)
    assert [(r["seed"], r["status"]) for r in doc["runs"]] == [
        (0, "ok"), (0, "ok"), (0, "ok"),
        (1, "ok"), (1, "interrupted"), (1, "interrupted"),
        (2, "interrupted"), (2, "interrupted"), (2, "interrupted"),
    ]  # fmt: skip
    assert doc["statistics"]["used"] == [0]
    assert parity.headline(doc["parity"]).startswith("UNDETERMINED: only 1 seed finished in every framework")
    assert load_results(out / "seed-0")["runs"][0]["framework"] == "pytorch"  # each seed's own results.json
    assert (out / "report.md").exists() and not (out / "seed-2").exists()


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.jax
def test_a_real_two_seed_run(tmp_path: Path) -> None:
    """Two seeds, 10 steps each: every seed is a whole single run, the statistics are its numbers.

    Two frameworks suffice for the seed machinery (TensorFlow's start-up would double its time).
    """
    out = tmp_path / "seeds"
    cmd = [sys.executable, str(ROOT / "compare.py"), "--seeds", "0,1", "--train-limit", "1000", "--epochs", "1"]
    cmd += ["--frameworks", ",".join(TWO)]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    doc = load_results(out)
    status = parity.status_of(doc["parity"])
    assert proc.returncode == (0 if status == parity.AGREE else 1), proc.stdout + proc.stderr
    assert status in (parity.AGREE, parity.UNDETERMINED)
    for line in ("seed 0 (1 of 2)", "seed 1 (2 of 2)", "seed 1: AGREE"):
        assert line in proc.stderr  # progress names the seed
    assert " ± " in proc.stdout  # mean ± std per framework
    assert [(r["seed"], r["framework"], r["status"]) for r in doc["runs"]] == [
        (s, f, "ok") for s in (0, 1) for f in TWO
    ]
    for s in (0, 1):
        own = load_results(out / f"seed-{s}")
        assert own["config"]["seed"] == s and own["config"]["seeds"] == []
        assert [r["step_losses"] for r in own["runs"]] == [r["step_losses"] for r in doc["runs"] if r["seed"] == s]
        assert all(c["passed"] for c in own["parity"]["checks"])
        for f in TWO:
            assert (out / f"seed-{s}" / "probes" / f"{f}.npz").is_file()
            assert (out / f"seed-{s}" / "params" / f"{f}.npz").is_file()
    accuracy = {(r["seed"], r["framework"]): 100 * r["test_accuracy"] for r in doc["runs"]}
    assert accuracy[0, "jax"] != accuracy[1, "jax"]  # another seed: other weights, subset and batches
    jax = doc["statistics"]["metrics"]["accuracy"]["per_framework"]["jax"]
    assert jax["mean"] == pytest.approx((accuracy[0, "jax"] + accuracy[1, "jax"]) / 2)
    for p in doc["statistics"]["metrics"]["loss"]["pairs"]:  # 10 steps: test losses within 1e-5
        assert abs(p["mean"]) < 1e-4 and p["verdict"] == "equivalent"
    assert (out / "curves.png").read_bytes().startswith(PNG_MAGIC)
