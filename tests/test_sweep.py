"""common.verdict.sweep: how often each check fails on correct code, over seeds, without training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.verdict import parity, sweep
from tests.conftest import ROOT


def test_tally_counts_each_checks_failing_seeds_and_keeps_its_worst() -> None:
    per_seed = {
        seed: [
            parity.check("first-step loss: relative difference", loss, 1e-6, "pytorch vs jax"),
            parity.check("initial logits on the first batch: max abs difference", 4e-7, 1e-5, "pytorch vs jax"),
        ]
        for seed, loss in ((0, 1e-7), (1, 3e-6), (2, 2e-6))
    }
    loss, logits = sweep.tally(per_seed)
    assert loss["failed"] == [1, 2] and loss["worst"]["detail"] == "seed 1: pytorch vs jax"
    assert logits["failed"] == [] and logits["worst"]["value"] == 4e-7
    text = sweep.text([loss, logits], 3)
    assert "2 of 3 (seeds 1, 2)" in text and "0 of 3" in text


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.jax
def test_the_sweep_applies_the_runs_checks_to_each_seed(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "common.verdict.sweep", "--seeds", "0-1", "--train-limit", "1000"]
    cmd += ["--frameworks", "pytorch,jax", "--optimizer", "adam", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "2 seeds, the first 1,000 examples, batch 100, adam, pytorch, jax"
    doc = json.loads((out / "sweep.json").read_text())
    assert (doc["config"]["mnist"]["optimizer"], doc["config"]["mnist"]["lr"]) == ("adam", 0.001)  # compare.py's
    names = [row["name"] for row in doc["checks"]]
    stages = [name for stage, name in parity.STAGE_CHECKS.items() if stage != "loop"]  # the loop needs training
    assert names == [*stages, *(c for c in names if not c.startswith("float64"))]
    assert len(names) == 8 and all(row["failed"] == [] for row in doc["checks"])
    for seed in (0, 1):  # what a run of that seed writes
        assert {p.name for p in (out / f"seed-{seed}" / "stages").iterdir()} == {"pytorch.npz", "jax.npz"}
        assert {p.name for p in (out / f"seed-{seed}" / "probes").iterdir()} == {"pytorch.npz", "jax.npz"}
