"""Faults in one framework, bad data, Ctrl-C and reruns (docs/reliability.md lists each case)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compare
from common.config import RunConfig
from common.data import MNIST_FILES
from common.run import launch
from tests.conftest import (
    SHORT_MNIST,
    assert_columns_line_up,
    interrupt,
    load_results,
    run_compare,
    runs_by_framework,
    start_compare,
)


def fake_torch(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose `import torch` runs `body` instead: a crash, a hang, no memory."""
    package = tmp_path / "fake" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path / "fake")
    return env


@pytest.mark.jax
@pytest.mark.parametrize(
    ("body", "error", "names_log"),
    [
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "worker killed by SIGKILL (out of memory?)",
            True,
        ),
        ("raise MemoryError\n", "out of memory; lower --batch-size", False),
        ("raise ImportError('libtorch.so: cannot open shared object file')\n", "ImportError: libtorch.so", True),
    ],
    ids=["killed", "out-of-memory", "broken-install"],
)
def test_one_framework_failing_leaves_the_others(tmp_path: Path, body: str, error: str, names_log: bool) -> None:
    """One line each; the broken install's traceback is in the log that the line names, not on the terminal."""
    out = tmp_path / "run"
    env = fake_torch(tmp_path, body)
    proc = run_compare("--task", "plane", "--frameworks", "pytorch,jax", "--out", str(out), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = runs_by_framework(load_results(out))
    assert runs["pytorch"]["status"] == "failed"
    assert runs["pytorch"]["error"].startswith(error)
    assert runs["pytorch"]["error"].endswith(f" (see {out}/logs/pytorch.log)") == names_log
    assert runs["jax"]["status"] == "ok"
    assert "failed: " + error in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.jax
def test_a_hanging_framework_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = fake_torch(tmp_path, "import time\ntime.sleep(600)\n")
    start = time.monotonic()
    args = ("--task", "plane", "--frameworks", "pytorch,jax", "--timeout", "20")  # 20 s: jax's whole fit takes ~5
    proc = run_compare(*args, "--out", str(out), env=env)
    assert time.monotonic() - start < 120
    assert proc.returncode == 1
    runs = runs_by_framework(load_results(out))
    assert runs["pytorch"] == {**runs["pytorch"], "status": "failed", "error": "timed out after 20 s (raise --timeout)"}
    assert runs["jax"]["status"] == "ok"


def test_a_framework_that_is_not_installed_is_skipped_with_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "missing_modules", lambda framework: ["flax"])
    cfg = RunConfig(task="plane", frameworks=("jax",), out=str(tmp_path))
    [entry] = launch.run_all(cfg)
    assert entry["status"] == "skipped"
    assert entry["error"] == 'flax not installed; install with: pip install -c constraints.txt -e ".[jax]"'


@pytest.mark.jax
def test_ctrl_c_records_what_finished_and_leaves_valid_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = fake_torch(tmp_path, "import time\ntime.sleep(600)\n")
    proc = start_compare("--task", "plane", "--frameworks", "jax,pytorch,tensorflow", "--out", str(out), env=env)
    deadline = time.monotonic() + 120
    while not (out / "logs" / "pytorch.log").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # jax has finished and been collected: the pytorch worker has started
    time.sleep(1.0)  # and is now hanging in `import torch`
    stdout, stderr = interrupt(proc)
    assert proc.returncode == 130
    runs = runs_by_framework(load_results(out))
    assert runs["jax"]["status"] == "ok"
    assert runs["pytorch"] == {
        **runs["pytorch"],
        "status": "interrupted",
        "error": f"stopped by Ctrl-C (see {out}/logs/pytorch.log)",
    }
    assert runs["tensorflow"] == {**runs["tensorflow"], "status": "interrupted", "error": "stopped by Ctrl-C"}
    assert "Traceback" not in stdout + stderr
    assert_columns_line_up(stdout.split("\n\n")[0])


def test_a_table_of_failed_runs_lines_up() -> None:
    """The failure layout sizes framework, version and device like the normal one ("tensorflow" is 10 wide)."""
    from common import table

    stopped = [[f, "-", "-", "interrupted: stopped by Ctrl-C"] for f in ("pytorch", "tensorflow")]
    ok = ["jax", "0.10.2", "cpu", "0.41000", "0.30000", "91.00%", "2.0", "3,000"]
    assert table.text(table.MNIST_COLUMNS, [*stopped, ok]).splitlines() == [
        "framework   version  device  final train loss  test loss  test accuracy  train s  images/s",
        "----------  -------  ------  ----------------  ---------  -------------  -------  --------",
        "pytorch     -        -       interrupted: stopped by Ctrl-C",
        "tensorflow  -        -       interrupted: stopped by Ctrl-C",
        "jax         0.10.2   cpu     0.41000           0.30000    91.00%         2.0      3,000",
    ]


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.jax
def test_a_diverging_loss_fails_with_the_step_named(tmp_path: Path) -> None:
    """common.recorder watches every framework's losses alike: two frameworks show it."""
    out = tmp_path / "nan"
    args = ("--lr", "1e6", "--train-limit", "1000", "--epochs", "1", "--frameworks", "pytorch,jax")
    proc = run_compare(*args, "--out", str(out))
    assert proc.returncode == 1
    runs = runs_by_framework(load_results(out))
    assert set(runs) == {"pytorch", "jax"}
    for framework, run in runs.items():
        assert run["status"] == "failed", framework
        assert run["error"].startswith("loss became "), run["error"]
        assert " at step " in run["error"] and run["error"].endswith("; lower --lr")


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_the_same_command_twice_gives_the_same_numbers(short_mnist: tuple[Path, Any], tmp_path: Path) -> None:
    """On the CPU every framework is deterministic: identical losses, accuracies and weights."""
    first_out, second_out = short_mnist[0], tmp_path / "second"
    proc = run_compare(*SHORT_MNIST, "--out", str(second_out))  # the command short_mnist ran
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = [runs_by_framework(load_results(out)) for out in (first_out, second_out)]
    for framework in ("pytorch", "tensorflow", "jax"):
        first, second = docs[0][framework], docs[1][framework]
        assert first["step_losses"] == second["step_losses"], framework
        assert first["test_accuracy"] == second["test_accuracy"], framework
        assert first["peak_rss_mb"] > 0
        with np.load(first_out / first["params"]) as a, np.load(second_out / second["params"]) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{framework} {key}")


def test_damaged_data_files_exit_2_with_the_file_named(tmp_path: Path) -> None:
    for name in MNIST_FILES:
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x03 truncated")
    proc = run_compare("--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/train-images-idx3-ubyte: SHA-256 mismatch (expected ")
    assert line.endswith("replace it with the original MNIST file (raw IDX or .gz)")
    assert not (tmp_path / "out").exists()  # input is validated before the output directory is made
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MNIST_FILES)  # the data directory is only read


def test_unreadable_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """(Root reads everything, so the permission answer is faked in-process.)"""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert compare.main(["--data-dir", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: --data-dir {tmp_path}: not readable; fix its permissions\n"


def test_unwritable_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: real_access(path, mode) and Path(path) != tmp_path / "o")
    assert compare.main(["--task", "plane", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'o'}: not writable; choose another directory\n"


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C (or a crash) between writing and renaming: readers still see the complete old file."""
    from common import io

    target = tmp_path / "results.json"
    io.atomic_write_json(target, {"run": "first"})

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_json(target, {"run": "second", "x": np.arange(3)})
    assert json.loads(target.read_text()) == {"run": "first"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    """mkstemp creates 0600 files; results are for sharing, so they get the umask's usual mode."""
    from common.io import atomic_write_json, current_umask

    atomic_write_json(tmp_path / "results.json", {"x": np.float32(1.5)})
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert json.loads((tmp_path / "results.json").read_text()) == {"x": 1.5}


@pytest.mark.jax
@pytest.mark.parametrize("where", ["report", "reference"])
def test_ctrl_c_after_training_keeps_results(tmp_path: Path, monkeypatch, capsys, where: str) -> None:
    """Ctrl-C while report.md is written (or the benchmark's reference matmul runs): 130, results kept."""
    from common.bench import cases
    from common.report import report

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    if where == "report":
        monkeypatch.setattr(report, "write_report", interrupt)
        args = ["--task", "plane"]
    else:
        monkeypatch.setattr(cases, "numpy_reference", interrupt)
        args = ["--task", "mnist", "--benchmark", "--train-limit", "1000", "--windows", "2", "--window-steps", "3"]
    assert compare.main([*args, "--frameworks", "jax", "--out", str(out), "--quiet"]) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert runs_by_framework(load_results(out))["jax"]["status"] == "ok"


def test_ctrl_c_during_the_data_download_creates_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "prepare_data", interrupt)
    out = tmp_path / "run"
    assert compare.main(["--task", "mnist", "--out", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert not out.exists()
