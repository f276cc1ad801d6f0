"""`compare.py --benchmark`: bench.json is written and well-formed (no timing thresholds).

The statistics are checked on made-up numbers; the end-to-end run uses 1,000 examples and
the default BenchConfig (10 warm-up steps, then 5 windows of 20 steps at batch 100).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from common import benchmark
from common.config import FRAMEWORKS, BenchConfig
from common.flops import train_flops_per_image
from tests.conftest import run_compare


def test_step_statistics() -> None:
    stats = benchmark.step_statistics(np.array([0.010, 0.012, 0.011, 0.030, 0.009]), batch_size=100)
    assert stats["step_ms"] == pytest.approx(11.0)
    assert stats["step_ms_iqr"] == pytest.approx(2.0)  # 12 - 10: the 30 ms outlier does not count
    assert stats["images_per_second"] == pytest.approx(100 / 0.011)
    assert stats["gflops"] == pytest.approx(100 / 0.011 * train_flops_per_image() / 1e9)


def test_time_steps_protocol() -> None:
    calls: list[int] = []
    out = benchmark.time_steps(calls.append, BenchConfig(warmup_steps=3, window_steps=4, windows=5), batch_size=10)
    assert calls == [1, 3, 4, 4, 4, 4, 4]  # first step, warm-up, five windows
    assert len(out["window_step_ms"]) == 5
    assert out["first_step_s"] >= 0


def test_batches_cycle_through_epochs() -> None:
    it = benchmark.batches(n=30, batch_size=10, seed=0)
    first_epoch = [next(it) for _ in range(3)]
    second_epoch = [next(it) for _ in range(3)]
    assert sorted(np.concatenate(first_epoch)) == list(range(30))
    assert sorted(np.concatenate(second_epoch)) == list(range(30))
    assert not np.array_equal(first_epoch[0], second_epoch[0])


def test_numpy_reference_is_positive() -> None:
    ref = benchmark.numpy_reference(n=256)
    assert ref["gflops"] > 0 and ref["blas"]


@pytest.mark.slow
def test_benchmark_writes_bench_json(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = run_compare("--task", "mnist", "--benchmark", "--train-limit", "1000", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "images/s" in proc.stdout
    bench = json.loads((out / "bench.json").read_text())
    assert bench["schema"] == benchmark.SCHEMA
    assert bench["config"]["batch_size"] == 100
    assert bench["environment"]["cores"] >= 1
    assert bench["reference"]["gflops"] > 0
    rows = {r["framework"]: r for r in bench["frameworks"]}
    assert set(rows) == set(FRAMEWORKS)
    for name, row in rows.items():
        assert row["status"] == "ok", f"{name}: {row.get('error')}"
        for key in benchmark.ROW_KEYS:
            assert key in row, f"{name}: no {key}"
        for key in ("first_step_s", "step_ms", "images_per_second", "gflops", "fraction_of_reference", "peak_rss_mb"):
            assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0, f"{name}: {key}"
        assert row["step_ms_iqr"] >= 0
        assert row["threads"] >= 1
        assert len(row["window_step_ms"]) == bench["config"]["bench"]["windows"]
        assert row["images_per_second"] == pytest.approx(100 / (row["step_ms"] / 1e3))
        assert 0 < row["relative_to_fastest"] <= 1
