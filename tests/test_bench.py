"""`compare.py --benchmark`: the protocol, the statistics, the settings and what bench.json records.

No timing thresholds anywhere: the statistics are checked on made-up numbers, and the one
end-to-end run (1,000 examples, 2 windows of 5 steps) checks that every field is present and
well-formed, that the settings reached each framework, and that every loop learns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common import environment, hlo, settings, timing
from common.bench import cases, summary, tables
from common.config import FRAMEWORKS, BenchConfig, RunConfig
from common.flops import train_flops_per_image
from common.report import plots, report
from common.run import launch
from tests.conftest import load_results, run_compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_step_statistics() -> None:
    stats = timing.step_statistics(np.array([0.010, 0.012, 0.011, 0.030, 0.009]), batch_size=100)
    assert stats["step_ms"] == pytest.approx(11.0)
    assert stats["step_ms_iqr"] == pytest.approx(2.0)  # 12 - 10: the 30 ms outlier does not count
    assert stats["images_per_second"] == pytest.approx(100 / 0.011)
    assert stats["gflops"] == pytest.approx(100 / 0.011 * train_flops_per_image() / 1e9)


def test_time_steps_protocol() -> None:
    calls: list[int] = []

    def run_steps(n: int) -> float:
        calls.append(n)
        return 2.0 / len(calls)

    out = timing.time_steps(run_steps, BenchConfig(warmup_steps=3, window_steps=4, windows=5), batch_size=10)
    assert calls == [1, 3, 4, 4, 4, 4, 4]  # first step, warm-up, five windows
    assert len(out["window_step_ms"]) == len(out["window_cpu_ms"]) == 5
    assert out["losses"] == [2.0 / k for k in range(1, 8)]
    assert out["first_step_s"] >= 0


def test_marks_without_warmup() -> None:
    assert timing.marks(BenchConfig(warmup_steps=0, window_steps=5, windows=2)) == [1, 6, 11]
    assert timing.total_steps(BenchConfig()) == 1 + 10 + 5 * 20


def test_a_loop_that_stops_early_is_an_error() -> None:
    watch = timing.Stopwatch(BenchConfig(warmup_steps=0, window_steps=2, windows=3), batch_size=10)
    watch.start()
    watch.lap(1.0)
    with pytest.raises(RuntimeError, match="after 1 of 4 timing marks"):
        watch.result()


def test_batches_cycle_through_epochs() -> None:
    it = timing.batches(n=30, batch_size=10, seed=0)
    first_epoch = [next(it) for _ in range(3)]
    second_epoch = [next(it) for _ in range(3)]
    assert sorted(np.concatenate(first_epoch)) == list(range(30))
    assert sorted(np.concatenate(second_epoch)) == list(range(30))
    assert not np.array_equal(first_epoch[0], second_epoch[0])


def test_numpy_reference_is_positive() -> None:
    ref = cases.numpy_reference(n=256)
    assert ref["gflops"] > 0 and ref["blas"]


# --- Settings: one table, applied by the launcher only ---------------------------------------


def test_settings_lists_parse() -> None:
    assert settings.parse("fastest, defaults,fastest") == ("fastest", "defaults")
    with pytest.raises(ValueError, match="unknown settings quick; choose from defaults, fastest"):
        settings.parse("defaults,quick")


def test_worker_env_applies_the_settings_of_its_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # a user's shell must not turn "fastest" off...
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    fastest = launch.worker_env(RunConfig(task="mnist", settings="fastest"), "tensorflow")
    assert fastest["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # ...nor make "defaults" something else
    defaults = launch.worker_env(RunConfig(task="mnist", settings="defaults"), "tensorflow")
    assert "TF_ENABLE_ONEDNN_OPTS" not in defaults
    jax = launch.worker_env(RunConfig(task="mnist", settings="fastest"), "jax")
    assert jax["XLA_FLAGS"].startswith("--xla_dump_to=/tmp/x")  # the user's flags stay; ours are appended


def test_every_framework_has_fastest_settings_with_a_reason() -> None:
    assert set(settings.FASTEST) == set(FRAMEWORKS)
    assert all(t.why for t in settings.FASTEST.values())
    assert settings.TRAINING in settings.SETTINGS


def test_one_worker_stands_for_settings_that_are_the_same() -> None:
    names = ("defaults", "fastest")
    same = [f for f in FRAMEWORKS if not settings.FASTEST[f].env]
    for framework in FRAMEWORKS:
        groups = cases.worker_settings(framework, names)
        if framework in same:
            assert groups == [("defaults", names)]
        else:
            assert groups == [("defaults", ("defaults",)), ("fastest", ("fastest",))]
    # a "fastest" that changes nothing on this machine (same_as_defaults): one worker for both there too
    assert all(cases.worker_settings(f, names, same_here=True) == [("defaults", names)] for f in FRAMEWORKS)


def test_fastest_equals_defaults_where_the_framework_reports_the_same_kernels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each settings' worker says which kernels it would run (as --check-setup); the same: one worker for both."""
    reported = {"defaults": "oneDNN", "fastest": "oneDNN"}
    asked: list[tuple[str, str, bool]] = []

    def run_one(framework: str, cfg: RunConfig, job: Path, name: str) -> dict[str, Any]:
        asked.append((framework, cfg.settings, cfg.setup_only))
        return {"framework": framework, "status": "ok", "setup": {"kernels": reported[cfg.settings]}}

    monkeypatch.setattr(launch, "run_one", run_one)
    cfg = RunConfig(task="mnist", benchmark=True, out=str(tmp_path))
    assert cases.probed(cfg, list(FRAMEWORKS)) == {"tensorflow": reported}  # only TensorFlow's sets something
    assert asked == [("tensorflow", "defaults", True), ("tensorflow", "fastest", True)]
    reported["defaults"] = "Eigen"  # an AVX2-only CPU: TensorFlow's defaults run Eigen, "fastest" oneDNN
    assert cases.probed(cfg, list(FRAMEWORKS)) == {}
    one = RunConfig(task="mnist", benchmark=True, out=str(tmp_path), bench=BenchConfig(settings=("fastest",)))
    asked.clear()
    assert cases.probed(one, list(FRAMEWORKS)) == {} and asked == []  # nothing to compare: nothing started


def test_vector_extensions_from_cpu_flags() -> None:
    flags = {"fpu", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile"}
    assert environment.vector_extensions(flags) == [
        "SSE4_2",
        "AVX",
        "AVX2",
        "FMA",
        "AVX512F",
        "AVX512_VNNI",
        "AMX_TILE",
    ]
    assert environment.vector_extensions(set()) == []


def test_top_ops_ranks_by_time_per_step() -> None:
    ops = timing.top_ops({"conv": (3.0, 20), "relu": (1.0, 40), "add": (0.5, 10)}, steps=10, top=2)
    assert [op["op"] for op in ops] == ["conv", "relu"]
    assert ops[0] == {"op": "conv", "ms_per_step": 300.0, "share": 3.0 / 4.5, "calls_per_step": 2.0}


HLO = (
    "HloModule jit_train_step\n%fused_computation (p: f32[2]) -> f32[2] {\n  ROOT %c = convolution(%p)\n}\n\n"
    "%fused_computation.1 (p: f32[2]) -> f32[2] {\n  ROOT %m = maximum(%p, %p)\n}\n\n"
    "ENTRY %main (a: f32[2]) -> f32[2] {\n"
    "  %ynn_fusion = f32[24,5,5,32]{3,2,1,0} fusion(%a), kind=kCustom, calls=%fused_computation, "
    'backend_config={"fusion_config":{"kind":"__ynn_fusion"}}\n'
    "  %max_fusion = f32[8]{0} fusion(%b), kind=kLoop, calls=%fused_computation.1, "
    'metadata={op_name="jit(train_step)/jvp()/max"}\n'
    "  ROOT %c2 = f32[2]{0} convolution(%a, %a)\n}\n"
)


def test_hlo_names_kernels_and_fusions() -> None:
    assert sorted(hlo.conv_fusions(HLO)) == ["__ynn_fusion", "unfused"]  # one in YNNPACK, one in ENTRY itself
    assert hlo.library(hlo.conv_fusions(HLO)) == "Eigen+YNNPACK"
    assert hlo.fusion_names(HLO) == {
        "ynn_fusion": "convolution -> f32[24,5,5,32]",
        "max_fusion": "elementwise -> f32[8], jvp()/max",
    }


# --- Statistics over cases and repeats, on made-up numbers ------------------------------------


def case(loop: str, batch: int, step_ms: list[float]) -> dict[str, Any]:
    stats = timing.step_statistics(np.array(step_ms) / 1e3, batch)
    return {"loop": loop, **stats, "first_step_s": 0.5, "losses": [2.3, 1.0], "peak_rss_mb": 400.0}


def worker(framework: str, name: str, repeat: int, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "framework": framework,
        "status": "ok",
        "version": "1",
        "device": "cpu",
        "settings": name,
        "stands_for": [name],
        "repeat": repeat,
        "kernels": {"library": "oneDNN", "threads": 2, "settings": name},
        "cases": cases,
        "load_before": 0.5,
        "load_after": 1.5,
    }


def bench_doc(repeats: int = 2) -> dict[str, Any]:
    """PyTorch's loop clearly faster than its textbook; TensorFlow's within noise of its textbook."""
    cfg = RunConfig(task="mnist", benchmark=True, frameworks=("pytorch", "tensorflow"))
    runs = []
    for r in range(1, repeats + 1):
        runs.append(worker("pytorch", "fastest", r, [case("project", 100, [20, 21]), case("textbook", 100, [30, 31])]))
        tf_project = [25, 26] if r == 1 else [23, 24]
        runs.append(worker("tensorflow", "fastest", r, [case("project", 100, tf_project), case("textbook", 100, [24])]))
    runs.append({"framework": "tensorflow", "status": "failed", "error": "boom", "settings": "defaults"})
    env = {**environment.describe(0), "vector_extensions": ["AVX2"]}
    reference = {"what": "test matmul", "blas": "test", "gflops": 200.0, "samples": [190.0, 200.0]}
    return {
        "schema": "triptych/results/1",
        "task": "mnist",
        "config": cfg.to_dict(),
        "environment": env,
        "reference": reference,
        "runs": runs,
        "parity": {"passed": True, "checks": [], "note": "benchmark"},
    }


def test_summarise_pools_repeats_and_compares() -> None:
    bench = summary.summarise(bench_doc())
    rows = {(r["framework"], r["loop"]): r for r in bench["rows"]}
    assert len(rows) == 4 and len(bench["failed"]) == 1
    pt = rows[("pytorch", "project")]
    assert pt["repeats"] == 2
    assert pt["step_ms"] == pytest.approx(20.5)  # median of all four windows
    assert pt["spread"] == "range of 2 repeats"
    assert pt["relative_to_fastest"] == 1.0 and not pt["overlaps_fastest"]
    assert pt["relative_to_textbook"] == pytest.approx(30.5 / 20.5)
    assert not pt["overlaps_textbook"]
    tf = rows[("tensorflow", "project")]
    assert tf["images_per_second_low"] == pytest.approx(100 / 0.0255)  # the slower repeat's median
    assert tf["overlaps_textbook"]  # 24 ms lies between its repeats' 23.5 and 25.5
    assert bench["load_average"] == {"min": 0.5, "max": 1.5}
    assert bench["reference"]["gflops"] == 200.0


def test_one_repeat_spreads_over_windows() -> None:
    bench = summary.summarise(bench_doc(repeats=1))
    row = next(r for r in bench["rows"] if r["framework"] == "pytorch" and r["loop"] == "project")
    assert row["spread"] == "IQR of 2 windows"
    assert row["images_per_second_low"] < row["images_per_second"] < row["images_per_second_high"]


def test_tables_goals_and_plot() -> None:
    bench = summary.summarise(bench_doc())
    text = tables.table(bench)
    assert "textbook (DataLoader)" in text and "textbook (model.fit)" in text
    assert "fastest *" in text  # the settings training runs use are marked
    assert "0.98x ~" in text  # TensorFlow against its textbook: within noise, and marked so
    assert any(line.split()[:3] == ["tensorflow", "defaults", "failed:"] for line in text.splitlines())
    assert "tensorflow >= 1.0x its textbook loop" in text
    md = tables.markdown_report(bench)
    assert "| framework | settings | loop | batch |" in md
    assert plots.render_bench(bench).startswith(PNG_MAGIC)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels, from the PNG's IHDR chunk."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_bench_png_draws_one_labelled_bar_per_case_at_one_batch_size() -> None:
    """One batch size: a bar per case, so the figure grows with the cases; several: lines on a fixed canvas."""
    bench = summary.summarise(bench_doc())
    assert len({r["batch_size"] for r in bench["rows"]}) == 1
    rows = len(bench["rows"])

    def height(b: dict[str, Any]) -> float:
        return png_size(plots.render_bench(b))[1] / plots.DPI  # inches, as the figure was sized

    assert height(bench) == pytest.approx(1.9 + 0.42 * rows, abs=0.01)
    assert height({**bench, "rows": bench["rows"][:2]}) == pytest.approx(1.9 + 0.42 * 2, abs=0.01)
    wider = {**bench, "rows": [*bench["rows"], *({**r, "batch_size": 1000} for r in bench["rows"])]}
    assert height(wider) == pytest.approx(5.8, abs=0.01)
    labels = [plots.case_label(r) for r in bench["rows"]]
    assert len(set(labels)) == rows  # every bar names a different case
    assert "tensorflow, fastest settings, textbook (model.fit)" in labels


def test_benchmark_report_from_results_json(tmp_path: Path) -> None:
    """report.md and bench.png come from results.json alone, so --report can redo them."""
    doc = bench_doc()
    written = report.write_report(doc, tmp_path)
    assert [p.name for p in written] == ["report.md", "bench.png"]
    text = (tmp_path / "report.md").read_text()
    assert "| pytorch | fastest * | project | 100 |" in text
    assert "vector extensions: AVX2" in text


def settings_doc(defaults_ms: list[list[float]], fastest_ms: list[list[float]]) -> dict[str, Any]:
    """TensorFlow timed with both settings over the repeats (one list of window ms per repeat), PyTorch once."""
    doc = bench_doc(repeats=len(defaults_ms))
    doc["runs"] = [r for r in doc["runs"] if r["framework"] == "pytorch"]
    for repeat, (d, f) in enumerate(zip(defaults_ms, fastest_ms, strict=True), start=1):
        for name, ms in (("defaults", d), ("fastest", f)):
            loops = [case("project", 100, ms), case("textbook", 100, ms)]
            doc["runs"].append(worker("tensorflow", name, repeat, loops))
    return doc


def test_the_goals_use_the_settings_that_ran_faster_in_this_run() -> None:
    """The issue's run: TensorFlow's defaults measurably faster than its "fastest"; the goals judge the defaults."""
    bench = summary.summarise(settings_doc([[16.0, 16.2], [16.1, 16.3]], [[18.0, 18.2], [18.3, 18.1]]))
    tf = {r["settings"]: r for r in bench["rows"] if r["framework"] == "tensorflow" and r["loop"] == "project"}
    assert tf["defaults"]["fastest_settings_here"] and not tf["fastest"]["fastest_settings_here"]
    assert tf["defaults"]["settings_compared"] == ["fastest"] and not tf["defaults"]["overlaps_settings"]
    assert summary.goal_row(tf["defaults"]) and not summary.goal_row(tf["fastest"])
    note = bench["fastest_settings"]["tensorflow"]
    assert note.startswith("batch 100: defaults 6,192 images/s (6,173-6,211) against fastest 5,510 images/s")
    assert note.endswith(": defaults faster")
    text = tables.table(bench)
    assert any(line.split()[:3] == ["tensorflow", "defaults", "*"] for line in text.splitlines())
    assert not any(line.split()[:3] == ["tensorflow", "fastest", "*"] for line in text.splitlines())
    goal = next(line for line in text.splitlines() if "slowest >= 0.6x fastest" in line)
    pt_rate = next(r for r in bench["rows"] if r["framework"] == "pytorch" and r["loop"] == "project")
    assert f"pytorch {pt_rate['images_per_second'] / 6192:.2f}x" in goal  # against the defaults' 6,192, not 5,510


def test_settings_within_noise_are_said_to_be() -> None:
    bench = summary.summarise(settings_doc([[16.0, 16.2], [17.0, 17.2]], [[16.5, 16.7], [17.5, 17.7]]))
    assert bench["fastest_settings"]["tensorflow"].endswith(": within noise")


def test_fastest_not_timed_or_the_same_here_is_said_so() -> None:
    only = summary.summarise(bench_doc())  # TensorFlow timed with "fastest" alone
    assert only["fastest_settings"]["tensorflow"] == (
        "TF_ENABLE_ONEDNN_OPTS=1, not timed against the defaults in this run (its measurement: docs/performance.md)"
    )
    assert only["fastest_settings"]["pytorch"] == "framework defaults"
    doc = bench_doc()
    for r in doc["runs"]:
        if r["framework"] == "tensorflow" and r["status"] == "ok":
            same = {"defaults": "oneDNN", "fastest": "oneDNN"}
            r |= {"settings": "defaults", "stands_for": ["defaults", "fastest"], "same_kernels": same}
    bench = summary.summarise(doc)
    assert bench["fastest_settings"]["tensorflow"] == (
        "TF_ENABLE_ONEDNN_OPTS=1 changes nothing here: tensorflow reports the same kernels (oneDNN) under its"
        " defaults, so one worker timed both (defaults = fastest)"
    )
    assert "| tensorflow | defaults = fastest * | project | 100 |" in tables.markdown_report(bench)


# --- End to end, tiny -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_benchmark_cases_settings_and_textbook_loops(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = (
        "--benchmark",
        "--textbook",
        "--profile",
        "--batch-size",
        "50,100",
        "--train-limit",
        "1000",
        "--threads",
        "1",
    )
    proc = run_compare(*args, "--windows", "2", "--window-steps", "5", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "images/s" in proc.stdout and "Goals" in proc.stdout and "Where the time goes" in proc.stdout
    assert "USDT" not in proc.stderr  # torch.profiler's start/stop lines stay in the worker's log
    for name in ("bench.json", "results.json", "report.md", "bench.png"):
        assert (out / name).is_file(), name
    bench = json.loads((out / "bench.json").read_text())
    assert bench["schema"] == summary.SCHEMA
    assert bench["config"]["bench"]["batch_sizes"] == [50, 100]
    assert bench["environment"]["vector_extensions"] == environment.vector_extensions()
    assert bench["reference"]["gflops"] > 0
    # TensorFlow's own rule for its default (tensorflow/core/util/port.cc, Linux x86): oneDNN on these CPUs,
    # where "fastest" (TF_ENABLE_ONEDNN_OPTS=1) then changes nothing, and one worker times both
    neural = {"AVX512_VNNI", "AVX512_BF16", "AVX_VNNI", "AMX_TILE", "AMX_INT8", "AMX_BF16"}
    onednn_by_default = bool(neural & set(environment.vector_extensions()))
    expected = {
        (f, s, loop, b)
        for f in FRAMEWORKS
        for s, _ in cases.worker_settings(f, settings.SETTINGS, same_here=f == "tensorflow" and onednn_by_default)
        for loop in ("project", "textbook")
        for b in (50, 100)
    }
    assert {(r["framework"], r["settings"], r["loop"], r["batch_size"]) for r in bench["rows"]} == expected
    for r in bench["rows"]:
        name = f"{r['framework']} {r['settings']} {r['loop']} {r['batch_size']}"
        for key in summary.ROW_KEYS:
            assert key in r, f"{name}: no {key}"
        for key in ("first_step_s", "step_ms", "images_per_second", "fraction_of_reference", "cpu_step_ms"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, f"{name}: {key}"
        assert r["images_per_second_low"] <= r["images_per_second"] <= r["images_per_second_high"], name
        assert r["threads"] == 1 and r["kernels"] != "unknown", name  # what the framework reports, after --threads 1
        assert len(r["window_step_ms"]) == 2, name
        assert r["losses"][-1] < r["losses"][0], f"{name} did not learn: {r['losses']}"
        if r["loop"] == "project":  # --profile: each framework's own profiler named the ops it timed
            assert r["profile"] and all(op["ms_per_step"] > 0 and op["op"] for op in r["profile"]), name
    kernels = load_results(out)["environment"]["frameworks"]["tensorflow"]["kernels"]
    assert kernels["defaults"]["onednn"] is onednn_by_default and kernels["defaults"]["env"] == {}
    if onednn_by_default:  # asked of TensorFlow itself before timing: the same kernels under both settings
        assert "fastest" not in kernels
        assert all(r["same_kernels"] == {"defaults": "oneDNN", "fastest": "oneDNN"} for r in tf_rows(bench))
        assert "TF_ENABLE_ONEDNN_OPTS=1 changes nothing here" in bench["fastest_settings"]["tensorflow"]
    else:
        assert kernels["fastest"]["onednn"] is True and kernels["fastest"]["env"] == {"TF_ENABLE_ONEDNN_OPTS": "1"}
        assert bench["fastest_settings"]["tensorflow"].startswith("batch 50: ")  # measured here, both batches


def tf_rows(bench: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in bench["rows"] if r["framework"] == "tensorflow"]


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_training_runs_record_their_settings_and_kernels(short_mnist: tuple[Path, Any]) -> None:
    doc = load_results(short_mnist[0])
    assert doc["config"]["settings"] == settings.TRAINING
    assert doc["environment"]["vector_extensions"] == environment.vector_extensions()
    for framework in FRAMEWORKS:
        k = doc["environment"]["frameworks"][framework]["kernels"][settings.TRAINING]
        assert k["library"] != "unknown" and k["threads"] >= 1, framework
    assert (short_mnist[0] / "report.md").read_text().count("kernels with fastest settings") == 3
