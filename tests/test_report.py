"""report.md and curves.png from hand-built results documents: no training, a second or two."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common import results
from common.config import MnistConfig, PlaneConfig, RunConfig
from common.data import PLANE_POINTS
from common.metrics import plane_loss, plane_optimum
from common.report import report
from common.verdict import parity
from tests.conftest import run_compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENVIRONMENT = {
    "python": "3.11.7",
    "os": "Linux-test",
    "cpu": "Test CPU",
    "cores": 2,
    "threads": 2,
    "gpus": [{"name": "NVIDIA H100", "driver": "550.1", "memory": "81559 MiB"}],
    "frameworks": {},
}
VERSIONS = {
    "pytorch": ("2.13.0+cpu", "CPU"),
    "tensorflow": ("2.21.0", "CPU, Keras 3.15.1"),
    "jax": ("0.10.2", "CPU, jaxlib 0.10.2"),
}


def ran(framework: str, **numbers: Any) -> dict[str, Any]:
    version, build = VERSIONS[framework]
    return {"framework": framework, "version": version, "build": build, "device": "cpu", "status": "ok", **numbers}


def plane_doc(tmp_path: Path) -> dict[str, Any]:
    """Three frameworks that took the same (made-up) path towards the exact optimum."""
    cfg = RunConfig(task="plane", out=str(tmp_path), plane=PlaneConfig(steps=200))
    optimum = plane_optimum(PLANE_POINTS)
    t = np.linspace(0.0, 1.0, 200)
    a, b = optimum["a"] * t + 0.001, optimum["b"] * t
    losses = [plane_loss(ai, bi, PLANE_POINTS) for ai, bi in zip(a, b, strict=True)]
    runs = [
        ran(
            fw,
            a=float(a[-1]),
            b=float(b[-1]),
            final_loss=losses[-1],
            losses=losses,
            trajectory=np.stack([a, b], axis=1).tolist(),
            wall_seconds=1.5,
            peak_rss_mb=200.0,
        )
        for fw in ("pytorch", "tensorflow", "jax")
    ]
    verdict = parity.plane_parity(runs, optimum)
    return results.build("plane", cfg.to_dict(), ENVIRONMENT, runs, verdict, profile=cfg.profile, optimum=optimum)


def mnist_run(framework: str, offset: float, steps: int = 240, epochs: int = 2) -> dict[str, Any]:
    step_losses = (2.3 * np.exp(-np.arange(steps) / 60) + 0.05 + offset * np.arange(steps)).tolist()
    per_epoch = steps // epochs
    history = [
        {
            "epoch": e + 1,
            "train_loss": float(np.mean(step_losses[e * per_epoch : (e + 1) * per_epoch])),
            "test_loss": 0.3 / (e + 1) + offset,
            "test_accuracy": 0.95 + 0.01 * e - offset,
            "seconds": 2.0,
        }
        for e in range(epochs)
    ]
    last = history[-1]
    return ran(
        framework,
        test_accuracy=last["test_accuracy"],
        test_loss=last["test_loss"],
        # a NumPy scalar, as a framework might hand back: the report must not print its repr
        final_loss=np.float64(last["train_loss"]),
        train_seconds=4.0,
        images_per_second=12_000.0,
        epochs=history,
        step_losses=step_losses,
        wall_seconds=9.0,
        peak_rss_mb=500.0,
    )


CHECKS = [
    parity.check("initial logits on the first batch: max abs difference", 3e-7, 1e-5, "pytorch vs tensorflow"),
    parity.check("test accuracy: max pairwise difference (points)", 0.7, 0.5, "pytorch vs tensorflow"),
]


def mnist_doc(tmp_path: Path, **mnist: Any) -> dict[str, Any]:
    """PyTorch and TensorFlow ran (drifting apart slowly); JAX failed; one check fails."""
    cfg = RunConfig(task="mnist", out=str(tmp_path), mnist=MnistConfig(epochs=2, train_limit=12_000, **mnist))
    runs = [
        mnist_run("pytorch", 0.0),
        mnist_run("tensorflow", 1e-6),
        results.not_run("jax", "failed", "ImportError: no module named jax\n(second line of the error)"),
    ]
    checks = [dict(c) for c in CHECKS]  # a copy: tests damage documents
    verdict = parity.verdict(checks, runs, note="shared initial weights, float32, strict profile")
    return results.build("mnist", cfg.to_dict(), ENVIRONMENT, runs, verdict, profile=cfg.profile)


def test_plane_writes_report_and_curves(tmp_path: Path) -> None:
    doc = plane_doc(tmp_path)
    written = report.write_report(doc, tmp_path)
    assert written == [tmp_path / "report.md", tmp_path / "curves.png"]
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("## triptych: plane")
    assert "**Configuration:** lr 0.005 · steps 200 · dtype float64 · seed 0\n" in text
    optimum = doc["optimum"]
    assert f"a = {optimum['a']:.5f}, b = {optimum['b']:.5f}, loss = {optimum['loss']:.6f}" in text
    assert "### Parity: passed" in text
    for check in doc["parity"]["checks"]:
        assert f"| {check['name']} |" in text


def test_mnist_report_has_rows_checks_and_environment(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path)
    written = report.write_report(doc, tmp_path)
    assert [p.name for p in written] == ["report.md", "curves.png"]
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
    text = (tmp_path / "report.md").read_text()
    config = text.splitlines()[2]
    for field in ("epochs 2", "batch size 100", "lr 0.02", "sgd", "float32", "init shared", "train limit 12000"):
        assert field in config
    for row in (
        "| pytorch | 2.13.0+cpu | cpu |",
        "| tensorflow | 2.21.0 | cpu |",
        "| jax | - | - | failed: ImportError: no module named jax (second line of the error) |",
    ):
        assert row in text
    assert "### Parity: FAILED" in text
    assert "shared initial weights, float32, strict profile" in text
    assert "| test accuracy: max pairwise difference (points) | 0.7 | 0.5 | FAIL | pytorch vs tensorflow |" in text
    assert "| initial logits on the first batch: max abs difference | 3e-07 | 1e-05 | pass |" in text
    assert "np.float64" not in text
    for line in ("python: 3.11.7", "cpu: Test CPU (2 cores, 2 threads used)", "NVIDIA H100 (driver 550.1"):
        assert line in text
    assert "- pytorch: 2.13.0+cpu (build: CPU)" in text


def test_report_is_deterministic(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path)
    report.write_report(doc, tmp_path / "one")
    report.write_report(doc, tmp_path / "two")
    assert (tmp_path / "one" / "report.md").read_bytes() == (tmp_path / "two" / "report.md").read_bytes()


def test_native_init_has_no_parity_panel_but_still_plots(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path, init="native")
    assert [p.name for p in report.write_report(doc, tmp_path)] == ["report.md", "curves.png"]
    assert "init native" in (tmp_path / "report.md").read_text()


def test_no_framework_finished_still_renders(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path)
    doc["runs"] = [results.not_run(fw, "skipped", "not installed") for fw in ("pytorch", "tensorflow", "jax")]
    assert [p.name for p in report.write_report(doc, tmp_path)] == ["report.md", "curves.png"]


def test_eval_params_writes_report_only(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path, eval_params=str(tmp_path / "trained.npz"))
    assert report.write_report(doc, tmp_path) == [tmp_path / "report.md"]
    assert not (tmp_path / "curves.png").exists()
    text = (tmp_path / "report.md").read_text()
    assert "checkpoint trained.npz" in text
    assert "| test loss | test accuracy |" in text


def test_benchmark_writes_report_only(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path)
    doc["config"]["benchmark"] = True
    doc["runs"] = [
        ran("pytorch", steps_per_second=41.5, images_per_second=4150.0, wall_seconds=3.0),
        results.not_run("jax", "failed", "boom"),
    ]
    doc["parity"] = parity.verdict([], doc["runs"], note="benchmark mode: timings only, no parity checks")
    assert report.write_report(doc, tmp_path) == [tmp_path / "report.md"]
    text = (tmp_path / "report.md").read_text()
    assert "| steps per second | images per second |" in text
    assert "| pytorch | 2.13.0+cpu | cpu | 41.5 | 4,150 | 3 |" in text
    assert "No parity checks were run." in text


@pytest.mark.parametrize("make", [plane_doc, mnist_doc])
def test_cli_report_reproduces_report_md(tmp_path: Path, make: Any) -> None:
    """What a run writes and what --report writes later from results.json are the same bytes."""
    doc = make(tmp_path)
    report.write_report(doc, tmp_path)
    first = (tmp_path / "report.md").read_bytes()
    results.write(tmp_path, doc)
    (tmp_path / "report.md").unlink()
    (tmp_path / "curves.png").unlink()
    proc = run_compare("--report", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "report.md"), str(tmp_path / "curves.png")]
    assert (tmp_path / "report.md").read_bytes() == first
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"schema": "triptych/results/1", "task": ', "not valid JSON"),
        ('{"a": 1}', "not a triptych results file"),
        (None, "no such results file"),
    ],
    ids=["damaged", "foreign", "missing"],
)
def test_cli_report_refuses_bad_input(tmp_path: Path, content: str | None, expected: str) -> None:
    target = tmp_path / "run"
    if content is not None:
        target.mkdir()
        (target / "results.json").write_text(content)
    proc = run_compare("--report", str(target), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and expected in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (target / "report.md").exists()


def test_moving_average_matches_a_plain_mean() -> None:
    from common.report.plots import moving_average

    values = np.arange(10, dtype=np.float64)
    smooth = moving_average(values, 4)
    assert len(smooth) == 7
    assert math.isclose(smooth[0], 1.5) and math.isclose(smooth[-1], 7.5)


def damage(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    """Delete the field at `path` (keys and list indices) from a results document."""
    for key in path[:-1]:
        doc = doc[key]
    del doc[path[-1]]


@pytest.mark.parametrize(
    ("make", "path", "message"),
    [
        (mnist_doc, ("runs", 0, "test_accuracy"), "missing runs[0].test_accuracy"),
        (mnist_doc, ("config", "mnist", "epochs"), "missing config.mnist.epochs"),
        (mnist_doc, ("parity", "checks", 1, "tolerance"), "missing parity.checks[1].tolerance"),
        (mnist_doc, ("runs", 1, "status"), "missing runs[1].status"),
        (plane_doc, ("optimum", "loss"), "missing optimum.loss"),
        (plane_doc, ("runs", 2, "losses"), "missing runs[2].losses"),
    ],
)
def test_cli_report_names_a_missing_inner_field(tmp_path: Path, make: Any, path: tuple, message: str) -> None:
    doc = make(tmp_path)
    damage(doc, path)
    results.write(tmp_path, doc)
    proc = run_compare("--report", str(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == f"error: {tmp_path / 'results.json'}: damaged results file, {message}\n"


def test_a_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    doc = mnist_doc(tmp_path)
    doc["runs"][0]["test_loss"] = "0.05"
    with pytest.raises(results.Malformed, match=r"^runs\[0\]\.test_loss is not a number$"):
        results.validate(doc)
    doc = mnist_doc(tmp_path)
    doc["runs"][1]["step_losses"][3] = None
    with pytest.raises(results.Malformed, match=r"^runs\[1\]\.step_losses holds something other than numbers$"):
        results.validate(doc)


def test_cli_report_on_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """(Root reads everything, so the permission error is raised in-process.)"""
    import compare

    results.write(tmp_path, mnist_doc(tmp_path))

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    assert compare.main(["--report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'results.json'}: cannot read it (Permission denied)\n"


def test_cli_report_into_an_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import compare
    from common import io

    results.write(tmp_path, mnist_doc(tmp_path))

    def denied(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(report, "atomic_write_text", lambda path, text: denied(path, text.encode()))
    monkeypatch.setattr(io, "atomic_write_bytes", denied)
    assert compare.main(["--report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --report {tmp_path}: cannot write the report there (Permission denied)\n"
