"""--device auto puts every framework on the device they share where they would part (common/run/placement.py),
so that the default run gives a verdict: decided from each framework's device report, faked here for a Mac
(PyTorch on MPS, TensorFlow and JAX on the CPU) and for a machine whose GPU one framework's build drives."""

from __future__ import annotations

import time
from typing import Any

import pytest

import compare
from common.config import RunConfig
from common.run import placement
from common.verdict import parity

MAC = {"pytorch": "mps", "tensorflow": "cpu", "jax": "cpu"}
ONE_GPU = {"pytorch": "cpu", "tensorflow": "gpu:0 (NVIDIA H200)", "jax": "cpu"}
EACH = " (--device each: each on its own device, and the run is not compared)"


@pytest.mark.parametrize(
    ("landed", "line"),
    [
        (MAC, "device: all on the CPU, the device they share: pytorch would take mps, tensorflow and jax the CPU"),
        (
            ONE_GPU,
            "device: all on the CPU, the device they share: tensorflow would take gpu:0 (NVIDIA H200),"
            " pytorch and jax the CPU",
        ),
        (
            {"pytorch": "cuda:0 (NVIDIA H200)", "tensorflow": "cpu", "jax": "gpu:0 (NVIDIA H200)"},
            "device: all on the CPU, the device they share: pytorch would take cuda:0 (NVIDIA H200),"
            " jax gpu:0 (NVIDIA H200), tensorflow the CPU",
        ),
        (
            {"pytorch": "mps", "jax": "cpu"},
            "device: all on the CPU, the device they share: pytorch would take mps, jax the CPU",
        ),
    ],
)
def test_frameworks_that_would_part_all_go_to_the_cpu(landed: dict[str, str], line: str) -> None:
    assert placement.decide(landed) == line + EACH


@pytest.mark.parametrize(
    "landed",
    [
        {"pytorch": "cpu", "tensorflow": "cpu", "jax": "cpu"},
        {"pytorch": "cuda:0 (NVIDIA H200)", "tensorflow": "gpu:0 (NVIDIA H200)", "jax": "gpu:0 (NVIDIA H200)"},
        {"pytorch": "mps"},  # one framework: nothing to compare
        {},
    ],
)
def test_frameworks_on_one_kind_of_device_stay_where_they_are(landed: dict[str, str]) -> None:
    assert placement.decide(landed) is None


def fake_machine(monkeypatch: pytest.MonkeyPatch, landed: dict[str, str] | None) -> list[RunConfig]:
    """A machine that may have a GPU (landed given) whose frameworks report `landed`; the configs asked about."""
    asked: list[RunConfig] = []

    def ask(cfg: RunConfig) -> dict[str, str]:
        asked.append(cfg)
        return {f: landed[f] for f in cfg.frameworks if f in landed}

    monkeypatch.setattr(placement, "gpu_possible", lambda: landed is not None)
    monkeypatch.setattr(placement, "ask", ask)
    return asked


@pytest.mark.parametrize("landed", [MAC, ONE_GPU])
def test_the_default_run_goes_to_the_cpu_and_says_so_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any, landed: dict[str, str]
) -> None:
    """compare.py itself: the line is the run's first, and the run gets --device cpu with the line recorded."""
    fake_machine(monkeypatch, landed)
    ran: list[RunConfig] = []
    monkeypatch.setattr(compare, "preflight", lambda cfg: cfg)
    monkeypatch.setattr(compare, "run", lambda cfg: ran.append(cfg) or 0)
    assert compare.main(["--task", "mnist", "--out", str(tmp_path / "out")]) == 0
    [cfg] = ran
    assert (cfg.device, cfg.device_choice) == ("cpu", placement.decide(landed))
    assert capsys.readouterr().err.splitlines()[0] == placement.decide(landed)


def test_check_setup_shows_where_the_run_would_go(monkeypatch: pytest.MonkeyPatch) -> None:
    """--check-setup on a Mac: the same decision, so each framework says what the default run would use."""
    fake_machine(monkeypatch, MAC)
    checked: list[RunConfig] = []
    monkeypatch.setattr(compare, "check_setup", lambda cfg, temporary: checked.append(cfg) or 0)
    assert compare.main(["--check-setup"]) == 0
    assert [cfg.device for cfg in checked] == ["cpu"]


@pytest.mark.parametrize(
    ("device", "landed"), [("each", MAC), ("cpu", MAC), ("gpu", ONE_GPU), ("auto", None), ("auto", ONE_GPU)]
)
def test_nothing_is_asked_or_changed_unless_auto_on_a_machine_with_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], device: str, landed: dict[str, str] | None
) -> None:
    """--device each, cpu or gpu: as given. No GPU possible: not asked (no cost). One framework: nothing to compare."""
    asked = fake_machine(monkeypatch, landed)
    frameworks = ("tensorflow",) if device == "auto" and landed else ("pytorch", "tensorflow", "jax")
    cfg = RunConfig(task="mnist", device=device, frameworks=frameworks)
    assert placement.settle(cfg) is cfg
    assert asked == [] and capsys.readouterr().err == ""


def test_each_device_keeps_todays_not_compared() -> None:
    """--device each on a Mac: PyTorch on MPS, the others on the CPU, and the verdict refuses to compare them."""
    runs = [{"framework": f, "status": "ok", "device": d} for f, d in MAC.items()]
    split = parity.across_devices(runs)
    assert split["status"] == parity.NOT_COMPARED
    assert split["reason"].startswith("pytorch ran on mps, tensorflow and jax on the CPU")


@pytest.mark.parametrize(
    ("framework", "installed", "platform", "expected"),
    [
        ("pytorch", {"torch": "2.13.0+cpu"}, "linux", True),
        ("pytorch", {"torch": "2.13.0"}, "darwin", False),  # MPS
        ("pytorch", {"torch": "2.13.0"}, "linux", False),  # PyPI's CUDA build (Linux aarch64, the CUDA set)
        ("tensorflow", {"tensorflow-cpu": "2.21.0"}, "linux", True),
        ("tensorflow", {"tensorflow": "2.21.0"}, "linux", False),
        ("tensorflow", {"tensorflow": "2.21.0"}, "darwin", True),  # no tensorflow-metal
        ("tensorflow", {"tensorflow": "2.21.0", "tensorflow-metal": "1.2.0"}, "darwin", False),
        ("jax", {"jax": "0.10.2", "jaxlib": "0.10.2"}, "darwin", True),
        ("jax", {"jax": "0.10.2", "jax-cuda12-plugin": "0.10.2"}, "linux", False),
    ],
)
def test_a_cpu_only_build_is_known_without_asking(
    monkeypatch: pytest.MonkeyPatch, framework: str, installed: dict[str, str], platform: str, expected: bool
) -> None:
    monkeypatch.setattr(placement.sys, "platform", platform)
    assert placement.cpu_only(framework, installed) is expected


def test_here_every_build_is_cpu_only_and_nothing_starts() -> None:
    """This project's Linux x86-64 set: each framework's answer is known from its metadata, in well under a second."""
    start = time.perf_counter()
    landed = placement.ask(RunConfig(task="mnist"))
    assert landed == {"pytorch": "cpu", "tensorflow": "cpu", "jax": "cpu"}
    assert time.perf_counter() - start < 5


@pytest.mark.pytorch
def test_a_framework_that_could_take_a_gpu_is_asked_in_its_own_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """frameworks/probe.py for real: PyTorch's runtime.configure, in its own process, says where it would run."""
    monkeypatch.setattr(placement, "cpu_only", lambda framework, installed: False)
    assert placement.ask(RunConfig(task="mnist", frameworks=("pytorch",))) == {"pytorch": "cpu"}
