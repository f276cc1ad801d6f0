"""Data-parallel training (--devices, --processes): each engine against one device, launching, faults, bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import compare
from common import stages, table
from common.config import MnistConfig, ParallelConfig, RunConfig
from common.parallel import PROCESS_ID, first_batches, replica_rows
from common.run import cluster
from common.verdict import parity
from common.weights import CANONICAL_SHAPES
from tests.conftest import (
    assert_columns_line_up,
    interrupt,
    load_results,
    run_compare,
    runs_by_framework,
    start_compare,
)

FRAMEWORKS = ("pytorch", "tensorflow", "jax")
# Tiny runs: 10 steps of 60 (divisible by 2 and 3); the reference compares the first 30 steps. On the CPU's
# simulated devices, whatever GPUs the machine has (on GPUs: tests/test_gpu.py).
TINY = ("--train-limit", "600", "--epochs", "1", "--batch-size", "60", "--device", "cpu")


def config(devices: int, processes: int | None = None, **kw) -> RunConfig:
    return RunConfig(task="mnist", parallel=ParallelConfig(devices=devices, processes=processes), **kw)


def check_values(doc: dict, framework: str) -> dict[str, float]:
    """The three data-parallel checks of one framework, by their kind."""
    found = {c["name"].split(", ", 1)[1]: c for c in doc["parity"]["checks"] if c["name"].startswith(f"{framework}:")}
    assert len(found) == 3, found
    assert all(c["passed"] for c in found.values()), found
    return {name: c["value"] for name, c in found.items()}


# --- The split, the batches, the launch commands (no framework started) ---


def test_replicas_take_contiguous_rows_of_the_global_batch() -> None:
    assert [replica_rows(60, 3, r) for r in range(3)] == [slice(0, 20), slice(20, 40), slice(40, 60)]
    rows = np.concatenate([np.arange(60)[replica_rows(60, 3, r)] for r in range(3)])
    np.testing.assert_array_equal(rows, np.arange(60))


def test_reference_batches_follow_the_shared_order_across_epochs() -> None:
    from common.data import batch_order

    first = first_batches(600, 60, 0, 30)
    assert first.shape == (30, 60)
    np.testing.assert_array_equal(first[:10], batch_order(600, 60, 0, 0))
    np.testing.assert_array_equal(first[10:20], batch_order(600, 60, 0, 1))


def test_free_ports_differ_and_can_be_bound() -> None:
    import socket

    ports = cluster.free_ports(4)
    assert len(set(ports)) == 4
    for port in ports:
        with socket.socket() as s:
            s.bind((cluster.LOOPBACK, port))


def test_single_device_is_one_worker() -> None:
    [member] = cluster.members("pytorch", config(1), ["frameworks.worker", "pytorch", "j", "r"])
    assert member.cmd[1:] == ["-m", "frameworks.worker", "pytorch", "j", "r"]
    assert member.env == {} and member.rank is None


def test_pytorch_is_started_by_torchrun() -> None:
    worker = ["frameworks.worker", "pytorch", "j", "r"]
    [standalone] = cluster.members("pytorch", config(3), worker)
    log_dir = f"--log-dir={config(3).out_dir / 'logs' / 'torchrun'}"  # not /tmp/torchelastic_*, left behind
    launcher = ["-m", "torch.distributed.run", log_dir]
    assert standalone.cmd[1:] == [*launcher, "--standalone", "--nproc-per-node=3", "-m", *worker]
    assert standalone.env == {"OMP_NUM_THREADS": "1"}  # one thread per replica
    nodes = cluster.members("pytorch", config(4, 2, threads=2), worker)
    assert [n.rank for n in nodes] == [0, 1]
    port = nodes[0].cmd[nodes[0].cmd.index("--nnodes=2") + 4]
    assert port.startswith("--master-port=")
    for i, node in enumerate(nodes):
        assert node.cmd[4:9] == [
            "--nnodes=2",
            f"--node-rank={i}",
            "--nproc-per-node=2",
            "--master-addr=127.0.0.1",
            port,
        ]
        assert node.env == {"OMP_NUM_THREADS": "2"}


def test_tensorflow_workers_get_one_tf_config_each() -> None:
    assert len(cluster.members("tensorflow", config(2), ["w"])) == 1  # MirroredStrategy: one process
    workers = cluster.members("tensorflow", config(3, 3), ["w"])
    configs = [json.loads(w.env["TF_CONFIG"]) for w in workers]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"]["worker"] == addresses for c in configs)
    assert [w.env[PROCESS_ID] for w in workers] == ["0", "1", "2"]


def test_jax_processes_meet_at_one_coordinator() -> None:
    processes = cluster.members("jax", config(4, 2), ["w"])
    assert len({p.env["JAX_COORDINATOR_ADDRESS"] for p in processes}) == 1
    assert [p.env[PROCESS_ID] for p in processes] == ["0", "1"]


def test_each_process_gets_its_own_gpus() -> None:
    processes = cluster.members("jax", config(4, 2), ["w"], gpus=["0", "1", "2", "3"])
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in processes] == ["0,1", "2,3"]


TORCHRUN_REPORT = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
frameworks.worker FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-29_08:33:00
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 24273)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 24273
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-29_08:33:00
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 24274)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 24274
============================================================
"""


def test_torchruns_report_names_the_root_cause_first() -> None:
    """The text torch 2.13's torchrun printed when rank 1 was killed (its peer then got SIGTERM)."""
    assert cluster.torchrun_failures(TORCHRUN_REPORT) == [(1, -9), (0, -15)]
    assert cluster.torchrun_failures("no report") == []


# --- Bad input: one line, exit 2, before anything starts ---


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--devices", "0"), "--devices must be 1 or more, got 0"),
        (("--devices", "3"), "--batch-size 100 does not split evenly over --devices 3; choose a multiple of 3"),
        (("--devices", "4", "--processes", "3"), "--processes 3 does not divide --devices 4 evenly"),
        (("--devices", "2", "--processes", "0"), "--processes must be 1 or more, got 0"),
        (("--processes", "2"), "--processes runs a data-parallel engine across processes; give --devices 2 or more"),
        (("--task", "plane", "--devices", "2"), "--devices applies to --task mnist; the plane fit runs on one device"),
        (
            ("--benchmark", "--devices", "1,2", "--processes", "2"),
            "--benchmark times each engine's single-machine form; leave out --processes",
        ),
        (("--devices", "1,2"), "--devices takes one value without --benchmark (lists are for --benchmark), got 1,2"),
        (("--benchmark", "--devices", "1,0"), "--devices must be 1 or more, got 0"),
        (
            ("--benchmark", "--devices", "two"),
            "--devices must be a whole number or, with --benchmark, a comma-separated list, got 'two'",
        ),
        (
            ("--benchmark", "--devices", "1,2", "--batch-size", "100,75"),
            "--batch-size 75 does not split evenly over --devices 2; choose a multiple of 2",
        ),
        (
            ("--eval-params", "x.npz", "--devices", "2"),
            "--eval-params scores a checkpoint on one device; leave out --devices",
        ),
        (
            ("--devices", "2", "--processes", "1"),
            "--devices 2 --processes 1: TensorFlow's MultiWorkerMirroredStrategy drives one CPU device per worker; "
            "give --processes 2, or leave tensorflow out of --frameworks",
        ),
    ],
    ids=[
        "zero",
        "batch-split",
        "processes-split",
        "zero-processes",
        "processes-alone",
        "plane",
        "benchmark-processes",
        "list-without-benchmark",
        "benchmark-zero",
        "benchmark-not-a-number",
        "benchmark-batch-split",
        "eval",
        "tf-cpu",
    ],
)
def test_bad_parallel_arguments_exit_2(args: tuple[str, ...], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert compare.main([*args, "--device", "cpu", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not out.exists()  # refused before the output directory is made


def test_more_gpus_than_exist_exit_2(tmp_path: Path, simulated_gpus, capsys) -> None:
    simulated_gpus(2)
    assert compare.main(["--devices", "4", "--device", "auto", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "error: --devices 4: this machine shows 2 GPUs; give at most that many, or --device cpu to simulate "
        "devices on the CPU\n"
    )


def test_a_command_line_error_is_one_line_from_the_shell() -> None:
    proc = run_compare("--devices", "2", "--device", "cpu", "--batch-size", "25", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: --batch-size 25 does not split evenly over --devices 2; choose a multiple of 2\n"


# --- The verdict's data-parallel checks (synthetic probes) ---


def write_reference(out: Path, framework: str, gap: float) -> None:
    """The single device's stage and probe, and the engine's side `gap` apart in its step losses."""
    rng = np.random.default_rng(0)
    losses = np.linspace(2.3, 1.0, stages.EPOCHS * stages.STEPS)
    engine_losses = losses.copy()
    engine_losses[11:] *= 1 + gap  # from the second epoch's second step on
    single, probe, engine = {"update/losses": losses}, {}, {"parallel/losses": engine_losses}
    for key, shape in CANONICAL_SHAPES.items():
        single[f"update/{key}"] = engine[f"parallel/params/{key}"] = rng.normal(size=shape)
        probe[f"grad/{key}"] = engine[f"parallel/grads/{key}"] = rng.normal(size=shape)
    for folder, name, arrays in (("stages", framework, single), ("probes", framework, probe)):
        (out / folder).mkdir(exist_ok=True)
        np.savez(out / folder / f"{name}.npz", **arrays)
    np.savez(out / "probes" / f"{framework}-parallel.npz", **engine)


def test_parallel_checks_come_per_framework_and_fail_on_a_gap(tmp_path: Path) -> None:
    cfg = config(2, out=str(tmp_path))
    write_reference(tmp_path, "pytorch", 0.0)
    write_reference(tmp_path, "jax", 1e-9)
    runs = [{"framework": "pytorch", "status": "ok"}, {"framework": "jax", "status": "ok"}]
    checks = {c["name"]: c for c in parity.parallel_checks(cfg, runs)}
    losses = "the update stage's 20 step losses (float64): relative difference"
    assert checks[f"pytorch: 2 devices vs one, {losses}"]["value"] == 0
    jax_losses = checks[f"jax: 2 devices vs one, {losses}"]
    assert jax_losses["value"] == pytest.approx(1e-9) and not jax_losses["passed"]
    assert jax_losses["detail"] == "parts at step 12 (epoch 2, step 2) by 1e-09"  # where, as the stages name it
    assert len(checks) == 6 and sum(c["passed"] for c in checks.values()) == 5
    result = parity.with_stages(parity.verdict(list(checks.values()), runs), [])
    assert (
        parity.headline(result)
        == f"DISAGREE: jax: 2 devices vs one, {losses} (parts at step 12 (epoch 2, step 2) by 1e-09)"
    )


def test_a_missing_reference_fails_its_checks(tmp_path: Path) -> None:
    checks = parity.parallel_checks(config(2, out=str(tmp_path)), [{"framework": "jax", "status": "ok"}])
    assert len(checks) == 3 and not any(c["passed"] for c in checks)


def test_the_table_shows_how_each_engine_ran() -> None:
    run = {"framework": "jax", "status": "ok", "engine": "jax.sharding (NamedSharding, nnx.jit)", "processes": 2}
    run |= {"collective_backend": "gloo", "launcher": "2 processes (jax.distributed)", "devices": 2}
    columns, [row] = table.parallel_table({"runs": [run, {"framework": "pytorch", "status": "failed"}]})
    assert dict(zip(columns, row, strict=True)) == {
        "framework": "jax",
        "engine": "jax.sharding (NamedSharding, nnx.jit)",
        "collective backend": "gloo",
        "launcher": "2 processes (jax.distributed)",
        "processes": "2",
        "devices": "2",
        "per-replica batch": "-",
    }


def test_one_device_adds_no_checks_and_no_table(tmp_path: Path) -> None:
    assert parity.parallel_checks(config(1, out=str(tmp_path)), [{"framework": "jax", "status": "ok"}]) == []
    assert table.parallel_table({"runs": [{"framework": "jax", "status": "ok"}]}) is None


@pytest.mark.slow
@pytest.mark.pytorch
def test_float32_split_rounding_is_near_1e_5_at_batch_1000() -> None:
    """Why the float32 gradient check uses 1e-4: DDP's arithmetic on a correct split, batch 1000.

    Each half's float32 gradient divided by 2 and summed (what DDP computes for N = 2) and the
    full batch's float32 gradient are two roundings of one float64 gradient. Each is several
    1e-6 (of the tensor's max) from it, so they may differ by about 1e-5, and where they land
    depends on the CPU's kernels. Measured (seed 0, PyTorch) on a 2-core Intel Xeon with
    AVX-512 and AMX, native oneDNN / ONEDNN_MAX_CPU_ISA=AVX2: split vs single 9.95e-6 /
    1.01e-5, single vs float64 7.2e-6 / 7.7e-6, split vs float64 3.6e-6 / 2.4e-6; on a 2-core
    AMD EPYC with AVX2: split vs single 1.2e-5. So 1e-5 sits inside the spread of a correct
    engine, while 1e-4 holds with a 10x margin on every path measured.
    """
    from common.parallel import probe_grads
    from common.weights import mnist_init
    from frameworks.pytorch import mnist
    from frameworks.worker import load_data

    def grads(dtype: str, rows: np.ndarray) -> dict[str, np.ndarray]:
        data = images[dtype]
        model = mnist.create_model(MnistConfig(dtype=dtype), mnist_init(0), "cpu")
        return probe_grads(mnist.probe(model, data.train_images[rows], data.train_labels[rows], "cpu"))

    def apart(a: dict, b: dict) -> float:
        return max(parity.relative_to_max(a[k].astype(np.float64), b[k].astype(np.float64)) for k in a)

    images = {
        dtype: load_data(RunConfig(task="mnist", mnist=MnistConfig(dtype=dtype))) for dtype in ("float32", "float64")
    }
    rows = first_batches(60_000, 1000, 0, 1)[0]  # the first batch of 1000 of seed 0
    single, exact = grads("float32", rows), grads("float64", rows)
    halves = [grads("float32", rows[replica_rows(1000, 2, r)]) for r in range(2)]
    split = {k: halves[0][k] / np.float32(2) + halves[1][k] / np.float32(2) for k in single}
    print(
        f"split vs single {apart(split, single):.2e}, vs float64: single {apart(single, exact):.2e}, "
        f"split {apart(split, exact):.2e}"
    )
    # The tolerance covers two float32 roundings of the same gradient, on every kernel path measured.
    assert apart(split, single) < parity.STRICT32["grads"] / 5
    assert apart(split, exact) < parity.STRICT32["grads"] / 10 and apart(single, exact) < parity.STRICT32["grads"] / 10
    # Each float32 gradient is off the float64 one by rounding of the order of 1e-5 (measured 7.2e-6 and 7.7e-6:
    # 7x above this bound), far above float64's own 1e-15: the split's 1e-5 is rounding, not the engine.
    assert apart(single, exact) > 1e-6


# --- Training: each engine against one device (slow) ---


def dp_run(tmp_path: Path, *args: str, frameworks: str = ",".join(FRAMEWORKS)) -> tuple[dict, str]:
    out = tmp_path / "run"
    proc = run_compare(*TINY, "--frameworks", frameworks, *args, "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load_results(out), proc.stdout


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
@pytest.mark.parametrize(
    ("devices", "processes"),
    [(3, None), (2, 2)],
    ids=["3-devices-one-machine", "2-devices-2-processes"],
)
def test_data_parallel_computes_the_single_device_steps(tmp_path: Path, devices: int, processes: int | None) -> None:
    """float64 steps and weights within 1e-12 of one device; the float32 first-step gradients within 1e-4."""
    args = ["--devices", str(devices)] + (["--processes", str(processes)] if processes else [])
    doc, stdout = dp_run(tmp_path, *args)
    assert doc["parity"]["status"] == parity.AGREE
    engines = {"pytorch": "DistributedDataParallel", "jax": "jax.sharding (NamedSharding, nnx.jit)"}
    engines["tensorflow"] = "MultiWorkerMirroredStrategy" if processes else "MirroredStrategy"
    for framework, run in runs_by_framework(doc).items():
        values = check_values(doc, framework)
        float64 = [v for name, v in values.items() if "(float64)" in name]
        assert max(float64) < 1e-14, values  # measured <= 1.9e-15: 500x inside the tolerance
        assert run["devices"] == devices and run["per_replica_batch"] == 60 // devices
        assert run["engine"] == engines[framework]
        assert run["processes"] == (devices if framework == "pytorch" else processes or 1)
    assert "Data-parallel" in stdout and "DistributedDataParallel" in stdout
    report = (Path(doc["config"]["out"]) / "report.md").read_text()
    assert "### Data-parallel" in report and f"{devices} devices" in report


# --- Faults: a replica that dies or hangs ends every replica of its framework ---


def rank_hook(tmp_path: Path, framework: str, body: str) -> tuple[dict[str, str], Path]:
    """An environment in which rank 1 of `framework`'s run executes `body` as it starts.

    A sitecustomize on PYTHONPATH runs in every Python process before anything else; it acts
    only in `framework`'s workers (`-m frameworks.worker FRAMEWORK`: at that point sys.argv
    holds the arguments after the module name) and records their pids, to check that none
    outlives the run.
    """
    hook = tmp_path / "hook"
    hook.mkdir()
    pids = tmp_path / "pids.txt"
    code = [
        "import os, sys",
        f"if sys.argv[1:2] == [{framework!r}]:",
        f"    with open({str(pids)!r}, 'a') as f:",
        "        f.write(f'{os.getpid()}\\n')",
        f"    if (os.environ.get('RANK') or os.environ.get({PROCESS_ID!r})) == '1':",
        *(f"        {line}" for line in body.splitlines()),
    ]
    (hook / "sitecustomize.py").write_text("\n".join(code) + "\n")
    return {**os.environ, "PYTHONPATH": str(hook)}, pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's bookkeeping is left


def assert_all_ended(pids: Path, expected: int) -> None:
    recorded = [int(line) for line in pids.read_text().split()]
    assert len(recorded) == expected, recorded
    deadline = time.monotonic() + 5
    while any(alive(p) for p in recorded) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in recorded if alive(p)]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.pytorch
@pytest.mark.jax
def test_a_killed_replica_stops_its_framework_and_the_others_finish(tmp_path: Path) -> None:
    env, pids = rank_hook(tmp_path, "pytorch", "os.kill(os.getpid(), 9)")
    out = tmp_path / "run"
    args = (*TINY, "--devices", "2", "--frameworks", "pytorch,jax", "--out", str(out))
    proc = run_compare(*args, env=env, timeout=900)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = runs_by_framework(load_results(out))
    assert runs["pytorch"]["status"] == "failed"
    log = out / "logs" / "pytorch.log"
    cause = "rank 1 killed by SIGKILL (out of memory?); the other ranks were stopped"
    assert runs["pytorch"]["error"] == f"{cause} (see {log})"
    assert runs["jax"]["status"] == "ok" and runs["jax"]["engine"] == "jax.sharding (NamedSharding, nnx.jit)"
    check_values(load_results(out), "jax")
    assert_all_ended(pids, 2)
    assert_only_our_lines(proc.stdout + proc.stderr, log, "ChildFailedError")
    assert processes_of(out) == []
    assert f"failed: {cause} (see {log})" in proc.stdout
    assert_columns_line_up(proc.stdout.split("\n\n")[0])


@pytest.mark.distributed
@pytest.mark.pytorch
def test_a_replica_that_aborts_in_cpp_is_named_and_its_last_words_stay_in_the_log(tmp_path: Path) -> None:
    """std::terminate in a replica (issue 29's "terminate called without an active exception"): one line, the log."""
    terminate = "import ctypes\nctypes.CDLL('libstdc++.so.6')._ZSt9terminatev()"  # the C++ runtime's own abort
    env, pids = rank_hook(tmp_path, "pytorch", terminate)
    out = tmp_path / "run"
    proc = run_compare(*TINY, "--devices", "2", "--frameworks", "pytorch", "--out", str(out), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    log = out / "logs" / "pytorch.log"
    cause = "rank 1 killed by SIGABRT; the other ranks were stopped"
    assert runs_by_framework(load_results(out))["pytorch"]["error"] == f"{cause} (see {log})"
    assert "terminate called without an active exception" in log.read_text()
    assert "terminate called" not in proc.stdout + proc.stderr
    assert_all_ended(pids, 2)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.pytorch
def test_a_pytorch_replica_has_left_gloo_before_python_finalizes(tmp_path: Path) -> None:
    """Issue 29: gloo's threads used to outlive destroy_process_group into Python's finalization, which tore
    them down (at times aborting the replica). At exit (atexit runs before the modules are finalized)
    no gloo thread is left in the replica."""
    seen = tmp_path / "threads.txt"
    names = "sorted(open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task'))"
    at_exit = f"import atexit\natexit.register(lambda: open({str(seen)!r}, 'w').write(' '.join({names})))"
    env, pids = rank_hook(tmp_path, "pytorch", at_exit)
    out = tmp_path / "run"
    proc = run_compare(*TINY, "--devices", "2", "--frameworks", "pytorch", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    threads = seen.read_text().split()
    assert threads and not [t for t in threads if "gloo" in t], threads  # gloo_tcp_loop, pt_gloo_runloop
    assert_all_ended(pids, 2)


def assert_only_our_lines(terminal: str, log: Path, detail: str) -> None:
    """The engine's report (`detail`, its traceback, its absl lines) is in the log, never on the terminal."""
    assert detail in log.read_text() and "Traceback (most recent call last):" in log.read_text()
    for engine in (detail, "Traceback", "torch.distributed.elastic", "] Sending process", "SIGTERM"):
        assert engine not in terminal, terminal


def processes_of(out: Path) -> list[str]:
    """Command lines of live processes that name the run's directory (launchers, workers)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(out) in cmd and alive(int(cmdline.parent.name)):
            found.append(cmd)
    return found


@pytest.mark.distributed
@pytest.mark.pytorch
def test_ctrl_c_during_a_multi_process_run_shows_only_our_lines(tmp_path: Path) -> None:
    """Ctrl-C with two torchrun nodes up: each agent raises SignalException at length; the terminal gets none of it."""
    env, pids = rank_hook(tmp_path, "pytorch", "import time\ntime.sleep(600)")  # rank 1 hangs, rank 0 waits for it
    out = tmp_path / "run"
    args = (*TINY, "--devices", "2", "--processes", "2", "--frameworks", "pytorch,tensorflow", "--out", str(out))
    proc = start_compare(*args, env=env)
    deadline = time.monotonic() + 120
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.2)  # both agents have started their rank: they are in their monitoring loop
    time.sleep(1.0)
    stdout, stderr = interrupt(proc)
    assert proc.returncode == 130, stdout + stderr
    log = out / "logs" / "pytorch.log"
    runs = runs_by_framework(load_results(out))
    assert runs["pytorch"]["error"] == f"stopped by Ctrl-C (see {log})"
    assert runs["tensorflow"]["error"] == "stopped by Ctrl-C"
    assert_only_our_lines(stdout + stderr, log, "SignalException")
    assert stderr == ""
    assert stdout.splitlines()[:4] == [
        "framework   version  device  final train loss  test loss  test accuracy  train s  images/s",
        "----------  -------  ------  ----------------  ---------  -------------  -------  --------",
        f"pytorch     -        -       interrupted: stopped by Ctrl-C (see {log})",
        "tensorflow  -        -       interrupted: stopped by Ctrl-C",
    ]
    assert_all_ended(pids, 2)
    assert processes_of(out) == []


@pytest.mark.distributed
@pytest.mark.tensorflow
def test_a_failing_worker_is_named_with_its_error(tmp_path: Path) -> None:
    env, pids = rank_hook(tmp_path, "tensorflow", "os.environ['TF_CONFIG'] = '{not json'")
    out = tmp_path / "run"
    proc = run_compare(
        *TINY, "--devices", "2", "--processes", "2", "--frameworks", "tensorflow", "--out", str(out), env=env
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = runs_by_framework(load_results(out))["tensorflow"]["error"]
    assert error.startswith("rank 1: JSONDecodeError: "), error
    assert_all_ended(pids, 2)


@pytest.mark.distributed
@pytest.mark.jax
def test_a_hanging_process_is_stopped_with_every_other_at_the_timeout(tmp_path: Path) -> None:
    env, pids = rank_hook(tmp_path, "jax", "import time\ntime.sleep(600)")
    out = tmp_path / "run"
    start = time.monotonic()
    args = (*TINY, "--devices", "2", "--processes", "2", "--frameworks", "jax", "--timeout", "20")
    proc = run_compare(*args, "--out", str(out), env=env, timeout=300)
    assert time.monotonic() - start < 90
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert runs_by_framework(load_results(out))["jax"]["error"] == "timed out after 20 s (raise --timeout)"
    assert_all_ended(pids, 2)


def failed_torchrun(report: str):
    """A launcher group of one torchrun that exited 1 and printed `report`, as Group.failure reads it."""
    from common.run.launch import Group

    group = Group.__new__(Group)
    group.members = [cluster.Member(["torchrun"])]
    group.procs = [type("P", (), {"returncode": 1})()]
    group.failed = [0]
    group.tails = [[report.encode()]]
    return group


def test_a_signal_death_is_named_before_the_errors_it_causes(tmp_path: Path) -> None:
    """Rank 0's error (its peer's connection closed) came after rank 1's death: rank 1 is named."""
    group = failed_torchrun(TORCHRUN_REPORT)
    (tmp_path / "pytorch.rank0.json").write_text(
        json.dumps({"rank": 0, "error": "RuntimeError: gloo", "failed_at": 1.0})
    )
    message = group.failure(True, tmp_path / "pytorch.json")
    assert message == "rank 1 killed by SIGKILL (out of memory?); the other ranks were stopped"
    (tmp_path / "pytorch.rank1.json").write_text(json.dumps({"rank": 1, "error": "ValueError: boom", "failed_at": 0.5}))
    group.tails = [[]]
    assert group.failure(True, tmp_path / "pytorch.json") == "rank 1: ValueError: boom"


def test_a_rank_that_raised_is_named_from_its_record_not_as_a_signal(tmp_path: Path) -> None:
    """torchrun reports an ordinary error as exit code 1: no signal to name, the rank's own record says why."""
    group = failed_torchrun(
        TORCHRUN_REPORT.replace("exitcode  : -9 (pid: 24274)  (SIGKILL)", "exitcode  : 1 (pid: 24274)")
    )
    (tmp_path / "pytorch.rank1.json").write_text(
        json.dumps({"rank": 1, "error": "AttributeError: no precision", "failed_at": 0.5})
    )
    assert group.deaths() == []
    assert group.failure(True, tmp_path / "pytorch.json") == "rank 1: AttributeError: no precision"


# --- Speed: --benchmark --devices 1,2 ---


def bench_row(framework: str, devices: int, images: float, device: str = "cpu") -> dict:
    return {
        "framework": framework,
        "settings": "fastest",
        "precision": "float32",
        "compile": "off",
        "loop": "project",
        "batch_size": 100,
        "devices": devices,
        "device": device,
        "images_per_second": images,
        "images_per_second_low": images * 0.98,
        "images_per_second_high": images * 1.02,
    }


def test_data_parallel_speed_is_compared_with_one_device() -> None:
    """On a CPU the devices share the cores: the ratio is the overhead; on GPUs, the scaling efficiency."""
    from common.bench import summary

    rows = [bench_row("jax", 1, 1000.0), bench_row("jax", 2, 900.0), bench_row("jax", 3, 990.0)]
    summary.compare_devices(rows)
    assert "relative_to_one_device" not in rows[0]
    assert rows[1]["relative_to_one_device"] == pytest.approx(0.9)
    assert rows[1]["scaling_efficiency"] == pytest.approx(0.45)
    assert rows[2]["overlaps_one_device"] and not rows[1]["overlaps_one_device"]


@pytest.mark.parametrize(("device", "shown"), [("cpu", "0.90x"), ("gpu:0 (NVIDIA H200)", "0.45x")])
def test_the_speed_table_says_what_its_devices_are(device: str, shown: str) -> None:
    from common.bench import summary, tables

    rows = [bench_row("jax", 1, 1000.0, device), bench_row("jax", 2, 900.0, device)]
    summary.compare_devices(rows)
    for r in rows:
        r |= {"stands_for": ["fastest"], "kernels": "XLA", "threads": 2, "first_step_s": 1.0, "step_ms": 1.0}
        r |= {"gflops": 1.0, "fraction_of_reference": 0.1, "relative_to_fastest": 1.0}
    bench = {"rows": rows, "environment": {"cores": 2}, "failed": []}
    columns, lines = tables.table_rows(bench)
    assert {"devices", "per device", "vs 1 device"} <= set(columns)
    cell = dict(zip(columns, lines[1], strict=True))
    assert (cell["devices"], cell["per device"], cell["vs 1 device"]) == ("2", "450", shown)
    note = tables.devices_note(bench)
    assert ("scaling efficiency" in note) == (device != "cpu")
    assert ("sharing its 2 cores" in note) == (device == "cpu")


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
def test_benchmark_times_each_engine_against_one_device(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ("--benchmark", "--devices", "1,2", "--device", "cpu", "--train-limit", "600", "--batch-size", "60")
    args += ("--settings", "fastest")
    proc = run_compare(*args, "--windows", "2", "--window-steps", "3", "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((out / "bench.json").read_text())["rows"]
    by = {(r["framework"], r["devices"]): r for r in rows}
    assert set(by) == {(f, n) for f in ("pytorch", "tensorflow", "jax") for n in (1, 2)}
    engines = {f: by[(f, 2)]["engine"] for f in ("pytorch", "tensorflow", "jax")}
    assert engines["pytorch"] == "DistributedDataParallel" and engines["tensorflow"] == "MirroredStrategy"
    for f in ("pytorch", "tensorflow", "jax"):
        assert by[(f, 2)]["per_replica_batch"] == 30
        assert by[(f, 2)]["relative_to_one_device"] > 0
        assert "relative_to_one_device" not in by[(f, 1)]
    assert by[("pytorch", 2)]["processes"] == 2 and by[("jax", 2)]["processes"] == 1
    assert "devices: simulated on this CPU" in proc.stdout
