"""The devices each test assumes, shown without a GPU: every data-parallel run of the suite names its device, the
decisions compare.py makes from what nvidia-smi lists (a stand-in listing 0, 1 or 2 GPUs), the whole suite collected
as on a one- and a two-GPU machine (`pytest --gpus N`), and the GPU memory settings of the test processes."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import compare
from common import environment
from common.errors import UserError
from common.run import cluster, launch
from common.run.arguments import check_devices_exist, make_parser
from tests.conftest import ROOT, device_left_to_chance, nvidia_smi, stand_in_nvidia_smi

TESTS = ROOT / "tests"


# --- Every compare.py run of the suite names its device where --devices leaves it to the machine ---


def strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def devices_left_to_chance(source: str) -> list[str]:
    """The top-level definitions (a test with its decorators, a helper, a constant) that give compare.py `--devices`
    without `--device`, themselves or through a module constant or helper that names it: 'line 12: test_x'.
    Read, not run (ast); conftest's run_compare checks the command lines a test builds as it runs."""
    tree = ast.parse(source)
    defined = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined[node.name] = node
        elif isinstance(node, ast.Assign):
            defined.update((t.id, node.value) for t in node.targets if isinstance(t, ast.Name))
    stating: set[str] = set()  # TINY = (..., "--device", "cpu"), and whatever uses it, to a fixed point
    while grown := {
        name
        for name, node in defined.items()
        if name not in stating and ("--device" in strings(node) or names(node) & stating)
    }:
        stating |= grown
    found = []
    for node in tree.body:
        words = strings(node)
        if "--devices" in words and "--device" not in words and not names(node) & stating:
            name = getattr(node, "name", None) or ast.unparse(node).split("=")[0].strip()
            found.append(f"line {node.lineno}: {name}")
    return found


def test_every_data_parallel_run_of_the_suite_names_its_device() -> None:
    """A test that starts --devices N without --device runs on N GPUs, is refused ("this machine shows 1 GPU") or
    simulates N devices on the CPU, depending on the machine: each says which it means."""
    found = {
        path.name: where for path in sorted(TESTS.glob("*.py")) if (where := devices_left_to_chance(path.read_text()))
    }
    assert found == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('def test_a():\n    run_compare("--devices", "2")\n', ["line 1: test_a"]),
        ('def test_a():\n    run_compare("--devices", "2", "--device", "cpu")\n', []),
        ('TINY = ("--device", "cpu")\n\ndef test_a():\n    run_compare(*TINY, "--devices", "2")\n', []),
        ('CPU = ("--device", "cpu")\ndef run(*a):\n    main(*CPU, *a)\ndef test_a():\n    run("--devices", "2")\n', []),
        ('DP = ("--devices", "2")\n', ["line 1: DP"]),
        (
            '@pytest.mark.parametrize("args", [("--devices", "3")])\ndef test_b(args):\n    main([*args])\n',
            ["line 2: test_b"],  # the decorator's cases belong to the test
        ),
        ('def helper(n):\n    return ["--devices", str(n)]\n', ["line 1: helper"]),
    ],
)
def test_the_scan_finds_a_device_left_to_chance(source: str, found: list[str]) -> None:
    assert devices_left_to_chance(source) == found


@pytest.mark.parametrize(
    ("args", "left"),
    [
        (("--devices", "2"), True),
        (("--devices=3", "--epochs", "1"), True),
        (("--benchmark", "--devices", "1,2"), True),
        (("--devices", "2", "--device", "cpu"), False),
        (("--devices", "2", "--device=gpu"), False),
        (("--devices", "1"), False),
        (("--task", "plane"), False),
    ],
)
def test_a_command_line_that_leaves_its_devices_to_the_machine(args: tuple[str, ...], left: bool) -> None:
    """What conftest's run_compare and start_compare refuse to start (a test that builds its arguments at run time)."""
    assert bool(device_left_to_chance(args)) == left


# --- compare.py's decisions on a machine whose nvidia-smi lists 0, 1 or 2 GPUs (a stand-in; no GPU needed) ---


@pytest.mark.parametrize("gpus", [1, 2])
def test_the_project_sees_the_gpus_nvidia_smi_lists(simulated_gpus, gpus: int) -> None:
    simulated_gpus(gpus)
    assert environment.gpu_visible()
    assert cluster.visible_gpus() == [str(i) for i in range(gpus)]
    assert environment.gpu_info() == [{"name": "NVIDIA H200", "driver": "580.159.04", "memory": "143771 MiB"}] * gpus


@pytest.mark.parametrize("gpus", [None, 0])
def test_no_nvidia_smi_or_no_driver_shows_no_gpu(simulated_gpus, gpus: int | None) -> None:
    simulated_gpus(gpus)
    if list(Path("/dev").glob("nvidia[0-9]*")):
        pytest.skip("this machine has NVIDIA device files: common.environment sees a GPU whatever nvidia-smi says")
    assert (environment.gpu_visible(), cluster.visible_gpus(), environment.gpu_info()) == (False, [], [])


REFUSED_ON_1 = (
    "--devices 2: this machine shows 1 GPU; give at most that many, or --device cpu to simulate devices on the CPU"
)
REFUSED_ON_2 = (
    "--devices 3: this machine shows 2 GPUs; give at most that many, or --device cpu to simulate devices on the CPU"
)


@pytest.mark.parametrize(
    ("gpus", "args", "refusal"),
    [
        (None, ("--devices", "2"), None),  # no GPU: simulated on the CPU
        (1, ("--devices", "2"), REFUSED_ON_1),  # the suite's data-parallel tests before they named their device
        (1, ("--devices", "2", "--device", "cpu"), None),
        (1, ("--devices", "2", "--device", "gpu"), REFUSED_ON_1),
        (2, ("--devices", "2"), None),  # two GPUs: the engines would run on them
        (2, ("--devices", "3", "--batch-size", "60"), REFUSED_ON_2),
        (2, ("--devices", "3", "--batch-size", "60", "--device", "cpu"), None),
        (1, ("--benchmark", "--devices", "1,2"), REFUSED_ON_1),
        (1, ("--benchmark", "--devices", "1,2", "--device", "cpu"), None),
    ],
)
def test_how_many_devices_a_machine_allows(
    simulated_gpus, tmp_path: Path, gpus: int | None, args: tuple[str, ...], refusal: str | None
) -> None:
    simulated_gpus(gpus)
    cfg = compare.build_config(make_parser().parse_args([*args, "--out", str(tmp_path / "out")]))
    if refusal is None:
        check_devices_exist(cfg)
    else:
        with pytest.raises(UserError) as refused:
            check_devices_exist(cfg)
        assert str(refused.value) == refusal


@pytest.mark.parametrize(("gpus", "visible"), [(1, "0"), (2, "0,1")])
def test_device_cpu_hides_the_gpus_from_the_workers_and_auto_leaves_them(simulated_gpus, gpus: int, visible: str):
    """--device cpu: no worker sees a GPU; --device auto: every GPU is the framework's to find."""
    simulated_gpus(gpus)
    cpu = launch.worker_env(compare.build_config(make_parser().parse_args(["--device", "cpu"])))
    assert (cpu["CUDA_VISIBLE_DEVICES"], cpu["JAX_PLATFORMS"]) == ("", "cpu")
    auto = launch.worker_env(compare.build_config(make_parser().parse_args([])))
    assert "CUDA_VISIBLE_DEVICES" not in auto and "JAX_PLATFORMS" not in auto
    assert ",".join(cluster.visible_gpus()) == visible


# --- The whole suite as on a one- and a two-GPU machine (pytest --gpus N) ---


def collect(*options: str) -> subprocess.CompletedProcess:
    """The suite's test ids as pytest collects them, in a process of its own (each test module imported)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-n", "0", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_suite_collects_the_same_tests_on_one_and_two_simulated_gpus() -> None:
    """Every module imports and every test is there, as on this machine; which skip is each test's own decision."""
    plain = collect()
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    ids = [line for line in plain.stdout.splitlines() if "::" in line]
    assert len(ids) > 100
    for gpus in (1, 2):
        simulated = collect("--gpus", str(gpus))
        assert simulated.returncode == 0, simulated.stdout[-3000:] + simulated.stderr[-3000:]
        assert [line for line in simulated.stdout.splitlines() if "::" in line] == ids


def test_the_session_option_puts_the_stand_in_first(tmp_path: Path) -> None:
    """`pytest --gpus 2` in a process of its own: every process it starts asks the stand-in (PATH), not a real one."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import subprocess\n\n"
        "from common import environment\n\n"
        "def test_probe():\n"
        "    listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True).stdout.splitlines()\n"
        "    assert len(listed) == 2 and listed[1].startswith('GPU 1: NVIDIA H200')\n"
        "    assert len(environment.gpu_info()) == 2\n"
    )
    options = ("-q", "-p", "no:cacheprovider", "-p", "tests.conftest", "-n", "0", "--gpus", "2")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *options, str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_the_stand_in_answers_as_nvidia_smi_does(tmp_path: Path) -> None:
    path = stand_in_nvidia_smi(tmp_path, 2)
    listed = subprocess.run(["nvidia-smi", "-L"], env={**os.environ, "PATH": path}, capture_output=True, text=True)
    assert listed.stdout.splitlines() == [
        "GPU 0: NVIDIA H200 (UUID: GPU-3f1e2d4c-0000-1111-2222-333344445550)",
        "GPU 1: NVIDIA H200 (UUID: GPU-3f1e2d4c-0000-1111-2222-333344445551)",
    ]
    assert (tmp_path / "nvidia-smi").read_text() == nvidia_smi(2)
    failing = subprocess.run(["sh", "-c", nvidia_smi(0)], capture_output=True, text=True)
    assert failing.returncode == 9 and "couldn't communicate with the NVIDIA driver" in failing.stderr


# --- GPU memory in the test processes: as the workers take it, set before any framework is imported ---


def test_the_test_processes_take_gpu_memory_as_the_workers_do() -> None:
    worker = launch.worker_env(compare.build_config(make_parser().parse_args([])))
    for key, value in environment.GPU_MEMORY.items():
        assert os.environ[key] == value == worker[key], key
    assert environment.GPU_MEMORY == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def test_a_framework_imported_before_the_settings_is_refused() -> None:
    """A plugin (or -p) that imports JAX first would let it read its memory setting before conftest sets it."""
    start = (
        "import sys, types; sys.modules['jax'] = types.ModuleType('jax'); import pytest;"
        " sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '-n', '0', 'tests/test_devices.py']))"
    )
    proc = subprocess.run([sys.executable, "-c", start], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "jax was imported before tests/conftest.py set the GPU memory settings" in proc.stderr
