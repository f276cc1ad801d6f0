"""`make run` and `make test` pick the CPU or the CUDA builds: the choice, with a stand-in nvidia-smi on PATH
(no GPU needed), the venv's stamp, and the CUDA set resolved against the package index (slow).

Every make here runs against a throwaway VENV and only prints: `make builds` says the one line, `make -n`
lists what setting up would run without running it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT, nvidia_smi, path_without_nvidia_smi

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="needs make (apt-get install make)")

# nvidia-smi where it lists one H200, and where it is installed but cannot reach a driver.
H200 = nvidia_smi(1)
NO_DRIVER = nvidia_smi(0)


def make(tmp_path: Path, smi: str | None, *args: str) -> subprocess.CompletedProcess:
    """make in the repository with VENV in tmp_path and, when given, a stand-in nvidia-smi first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if smi is not None:
        (bin_dir / "nvidia-smi").write_text(smi)
        (bin_dir / "nvidia-smi").chmod(0o755)
    # Nothing of an outer make (`make test ARGS=...` runs this suite) may reach the make under test.
    env = {k: v for k, v in os.environ.items() if k not in ("GPU", "VENV", "ARGS", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = os.pathsep.join([str(bin_dir), path_without_nvidia_smi()])
    return subprocess.run(
        [
            MAKE,
            "-s",
            "--no-print-directory",
            "-C",
            str(ROOT),
            f"VENV={tmp_path / 'venv'}",
            "PYTHON=python3",
            "ARGS=",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stamp(tmp_path: Path, text: str) -> Path:
    """A venv whose stamp says `text` ("cpu", "gpu", or "" as written before there was a choice)."""
    path = tmp_path / "venv" / ".installed"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@needs_make
@pytest.mark.parametrize(
    ("smi", "gpu", "line"),
    [
        (None, None, "installing the CPU builds into {venv} (no NVIDIA GPU: nvidia-smi not found; GPU=1 to insist)"),
        (
            NO_DRIVER,
            None,
            "installing the CPU builds into {venv} (no NVIDIA GPU: nvidia-smi -L lists no GPU; GPU=1 to insist)",
        ),
        (
            H200,
            None,
            "installing the CUDA builds into {venv} (nvidia-smi -L: GPU 0: NVIDIA H200; GPU=0 for the CPU builds)",
        ),
        (H200, "0", "installing the CPU builds into {venv} (GPU=0, though nvidia-smi -L lists GPU 0: NVIDIA H200)"),
        (None, "0", "installing the CPU builds into {venv} (GPU=0; no NVIDIA GPU: nvidia-smi not found)"),
        (H200, "1", "installing the CUDA builds into {venv} (GPU=1; nvidia-smi -L: GPU 0: NVIDIA H200)"),
        (
            None,
            "1",
            "installing the CUDA builds into {venv} (GPU=1, though no NVIDIA GPU is visible: nvidia-smi not found)",
        ),
    ],
)
def test_the_makefile_says_which_builds_and_why(tmp_path: Path, smi: str | None, gpu: str | None, line: str) -> None:
    proc = make(tmp_path, smi, "builds", *([f"GPU={gpu}"] if gpu is not None else []))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"triptych: {line.format(venv=tmp_path / 'venv')}\n"


@needs_make
def test_a_gpu_value_other_than_0_or_1_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = make(tmp_path, None, "builds", "GPU=yes")
    assert proc.returncode == 2 and proc.stdout == ""
    assert re.fullmatch(
        r"Makefile:\d+: \*\*\* GPU must be 0 \(the CPU builds\) or 1 \(the CUDA builds\), got 'yes'\.  Stop\.\n",
        proc.stderr,
    )


# The CPU set asks PyTorch's own CPU index for torch==2.13.0+cpu where it answers (PyPI has no +cpu wheels).
TORCH_CPU_INDEX = (
    "$(curl -fsS -m 5 -o /dev/null https://download.pytorch.org/whl/cpu/torch/ 2>/dev/null"
    " && echo --extra-index-url https://download.pytorch.org/whl/cpu) "
)


def setup_commands(venv: Path, constraints: str, extras: str) -> list[str]:
    """What `make -n run` lists for a venv that holds nothing yet (after the one line)."""
    index = TORCH_CPU_INDEX if constraints == "constraints.txt" else ""
    return [
        f"test -x {venv}/bin/python || python3 -m venv {venv}",
        f"{venv}/bin/python -m pip install --quiet --upgrade pip",
        f'{venv}/bin/python -m pip install --quiet -c {constraints} {index}-e ".[{extras},dev]"',
    ]


@pytest.mark.parametrize(
    ("curl", "added"), [("exit 0", "--extra-index-url https://download.pytorch.org/whl/cpu"), ("exit 6", "")]
)
def test_the_cpu_builds_add_pytorchs_index_only_where_it_answers(tmp_path: Path, curl: str, added: str) -> None:
    """curl answering adds the index; curl failing (no network: exit 6, could not resolve) leaves pip's own."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "curl").write_text(f"#!/bin/sh\n{curl}\n")
    (fake / "curl").chmod(0o755)
    proc = subprocess.run(
        ["bash", "-c", f"echo {TORCH_CPU_INDEX}"],
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip() == added


RUN = [
    "{venv}/bin/python -m common.run.fetch --dataset mnist",
    "{venv}/bin/python compare.py --task mnist --dataset mnist",
]


@needs_make
def test_with_a_gpu_make_run_installs_the_cuda_builds_and_records_them(tmp_path: Path) -> None:
    """The CUDA set from constraints-gpu.txt, CUDA 12's cuDNN, NCCL and NVSHMEM last, PyTorch's CUDA 13 ones in a
    folder of their own, and the stamp says gpu."""
    venv = tmp_path / "venv"
    proc = make(tmp_path, H200, "-n", "run")
    assert proc.returncode == 0, proc.stderr
    assert [line.rstrip() for line in proc.stdout.splitlines()] == [
        f"triptych: installing the CUDA builds into {venv}"
        " (nvidia-smi -L: GPU 0: NVIDIA H200; GPU=0 for the CPU builds)",
        *setup_commands(venv, "constraints-gpu.txt", "all-cuda"),
        f"{venv}/bin/python -m pip install --quiet --no-deps --force-reinstall -c constraints-gpu.txt"
        " nvidia-cudnn-cu12 nvidia-nccl-cu12 nvidia-nvshmem-cu12",
        f"rm -rf {venv}/framework-libs/pytorch && {venv}/bin/python -m pip install --quiet --no-deps --target"
        f" {venv}/framework-libs/pytorch -c constraints-gpu.txt nvidia-cudnn-cu13 nvidia-nccl-cu13 nvidia-nvshmem-cu13",
        f"echo gpu > {venv}/.installed",
        *(line.format(venv=venv) for line in RUN),
    ]


@needs_make
def test_without_a_gpu_make_test_installs_the_cpu_builds_and_records_them(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = make(tmp_path, None, "-n", "test")
    assert proc.returncode == 0, proc.stderr
    assert [line.rstrip() for line in proc.stdout.splitlines()] == [
        f"triptych: installing the CPU builds into {venv} (no NVIDIA GPU: nvidia-smi not found; GPU=1 to insist)",
        *setup_commands(venv, "constraints.txt", "all"),
        f"echo cpu > {venv}/.installed",
        f"{venv}/bin/python -m common.run.fetch --dataset mnist",
        f"{venv}/bin/python -m pytest -n auto --dist worksteal",
    ]


@needs_make
@pytest.mark.parametrize("held", ["cpu\n", ""])
def test_a_venv_holding_the_cpu_builds_is_used_as_it_is(tmp_path: Path, held: str) -> None:
    """An empty stamp is what the Makefile wrote before there was a choice: it held the CPU builds."""
    stamp(tmp_path, held)
    proc = make(tmp_path, None, "-n", "run")
    assert proc.returncode == 0, proc.stderr
    venv = tmp_path / "venv"
    assert [line.rstrip() for line in proc.stdout.splitlines()] == [
        f"triptych: using the CPU builds in {venv} (no NVIDIA GPU: nvidia-smi not found; GPU=1 to insist)",
        *(line.format(venv=venv) for line in RUN),
    ]


@needs_make
def test_switching_sets_makes_the_venv_anew(tmp_path: Path) -> None:
    """tensorflow-cpu and tensorflow share one package directory: a venv changes set only by being made again."""
    stamp(tmp_path, "cpu\n")
    venv = tmp_path / "venv"
    proc = make(tmp_path, H200, "-n", "run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"triptych: replacing the CPU builds in {venv} with the CUDA builds"
        " (nvidia-smi -L: GPU 0: NVIDIA H200; GPU=0 for the CPU builds)"
    )
    assert lines[1:3] == [f"rm -rf {venv}", setup_commands(venv, "constraints-gpu.txt", "all-cuda")[0]]
    stamp(tmp_path, "gpu\n")
    back = make(tmp_path, H200, "-n", "run", "GPU=0")
    assert back.stdout.splitlines()[:2] == [
        f"triptych: replacing the CUDA builds in {venv} with the CPU builds"
        " (GPU=0, though nvidia-smi -L lists GPU 0: NVIDIA H200)",
        f"rm -rf {venv}",
    ]


@needs_make
def test_new_pins_update_the_venv_in_place(tmp_path: Path) -> None:
    held = stamp(tmp_path, "cpu\n")
    os.utime(held, (0, 0))  # older than constraints.txt and pyproject.toml
    venv = tmp_path / "venv"
    proc = make(tmp_path, None, "-n", "run")
    assert proc.returncode == 0, proc.stderr
    lines = [line.rstrip() for line in proc.stdout.splitlines()]
    assert lines[0] == (
        f"triptych: updating the CPU builds in {venv} to new pins"
        " (no NVIDIA GPU: nvidia-smi not found; GPU=1 to insist)"
    )
    assert lines[1:5] == [*setup_commands(venv, "constraints.txt", "all"), f"echo cpu > {venv}/.installed"]


# --- The two constraint files: the same versions, CPU builds in one and CUDA builds in the other ---


# Both files are compared as pip reads them on Linux x86-64 (constraints.txt's other platforms: test_platforms.py).
LINUX_X86_64 = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.11"}


def holds(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(LINUX_X86_64)


def pins(name: str) -> dict[str, str]:
    """{normalised package name: the pin's specifier} on Linux x86-64, e.g. {'torch': '==2.13.0+cpu'}."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.strip() and not line.startswith("#") and holds(req := Requirement(line)):
            found[re.sub(r"[-_.]+", "-", req.name).lower()] = str(req.specifier)
    return found


def test_the_cuda_builds_pin_the_same_versions() -> None:
    cpu, gpu = pins("constraints.txt"), pins("constraints-gpu.txt")
    assert (cpu["torch"], gpu["torch"]) == ("==2.13.0+cpu", "===2.13.0")  # "===": never the +cpu wheel
    assert (cpu["tensorflow-cpu"], gpu["tensorflow"]) == ("==2.21.0", "==2.21.0")
    assert "tensorflow-cpu" not in gpu and "tensorflow" not in cpu
    different = {p: (cpu[p], gpu[p]) for p in cpu.keys() & gpu.keys() if cpu[p] != gpu[p] and p != "torch"}
    assert different == {}
    assert set(cpu) - set(gpu) == {"tensorflow-cpu"}
    assert {
        "jax-cuda12-plugin",
        "jax-cuda12-pjrt",
        "nvidia-cudnn-cu12",
        "nvidia-nccl-cu12",
        "nvidia-nvshmem-cu12",
    } <= set(gpu)


def test_every_extra_is_pinned() -> None:
    """pyproject's extras name packages; each constraint file pins every one its set installs."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {
        name: {re.sub(r"[-_.]+", "-", req.name).lower() for req in map(Requirement, reqs) if holds(req)}
        for name, reqs in extras.items()
    }
    cpu, gpu = pins("constraints.txt"), pins("constraints-gpu.txt")
    for extra in ("pytorch", "tensorflow", "jax", "dev", "workflow-lint"):
        assert named[extra] <= set(cpu), extra
    for extra in ("pytorch-cuda", "tensorflow-cuda", "jax-cuda", "dev"):
        assert named[extra] <= set(gpu), extra


# --- The CUDA set against the package index: pip's own resolver, nothing installed ---

NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Network is unreachable|No route to host|ConnectTimeout|ReadTimeout|ProxyError"
)


@pytest.mark.slow
@pytest.mark.skipif(
    (sys.platform, platform.machine(), sys.version_info[:2]) != ("linux", "x86_64", (3, 11)),
    reason="constraints-gpu.txt is resolved for Linux x86_64 and Python 3.11",
)
def test_the_cuda_builds_resolve_against_the_package_index(tmp_path: Path) -> None:
    """`pip install --dry-run` of what `make run` installs with a GPU: it resolves, takes PyPI's CUDA torch
    (never a +cpu wheel, which "===" refuses), and every package it would install is pinned."""
    report = tmp_path / "report.json"
    dry_run = [
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--retries",
        "1",
        "--timeout",
        "30",
        "--report",
        str(report),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", *dry_run, "-c", "constraints-gpu.txt", "-e", ".[all-cuda,dev]"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode and NETWORK.search(proc.stdout + proc.stderr):
        pytest.skip(f"pip cannot reach the package index: {NETWORK.search(proc.stdout + proc.stderr).group()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item
        for item in json.loads(report.read_text())["install"]
    }
    torch = chosen["torch"]
    assert torch["metadata"]["version"] == "2.13.0"
    assert any(r.startswith("nvidia-cudnn-cu13") for r in torch["metadata"]["requires_dist"])  # the CUDA 13 build
    assert chosen["tensorflow"]["metadata"]["version"] == "2.21.0" and "tensorflow-cpu" not in chosen
    assert chosen["jax-cuda12-plugin"]["metadata"]["version"] == "0.10.2"
    gpu = pins("constraints-gpu.txt")
    unpinned = sorted(set(chosen) - set(gpu) - {"triptych"})
    assert unpinned == []
    moved = {
        p: chosen[p]["metadata"]["version"]
        for p in gpu
        if p in chosen and gpu[p].lstrip("=") != chosen[p]["metadata"]["version"]
    }
    assert moved == {}


# --- The CUDA set installed: each framework's worker loads the CUDA libraries it was built for ---

# Run in a framework's worker environment: what the process has loaded of cuDNN, NCCL and NVSHMEM, with the versions
# their own calls give (ctypes: no GPU needed), and what the framework was built with.
LOADED = """
import ctypes, json, re, sys
built = {}
if sys.argv[1] == "pytorch":
    import torch
    built = {"cuda": torch.version.cuda, "cudnn": "%d.%d" % tuple(torch._C._cudnn.getCompileVersion()[:2]),
             "nccl": "%d.%d" % torch.cuda.nccl.version()[:2]}
else:
    import jax
    from jax_cuda12_plugin import _versions
    try:
        jax.devices()  # the plugin loads its libraries; without a GPU it then falls back to the CPU
    except RuntimeError:
        pass
    cudnn = _versions.cudnn_build_version()
    built = {"cuda": "%d.%d" % divmod(_versions.cuda_runtime_build_version() // 10, 100),
             "cudnn": "%d.%d" % (cudnn // 10000, cudnn // 100 % 100)}
found = {}
for path in sorted({l.split()[-1] for l in open("/proc/self/maps") if re.search(r"/lib(cudnn|nccl)\\.so", l)}):
    lib = ctypes.CDLL(path)
    if "cudnn" in path:
        lib.cudnnGetVersion.restype = lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
        v, cuda = lib.cudnnGetVersion(), lib.cudnnGetCudartVersion()
        found["cudnn"] = {"path": path, "version": "%d.%d" % (v // 10000, v // 100 % 100), "cuda": cuda // 1000}
    else:
        v = ctypes.c_int()
        lib.ncclGetVersion(ctypes.byref(v))
        found["nccl"] = {"path": path, "version": "%d.%d" % (v.value // 10000, v.value // 100 % 100)}
print(json.dumps({"built": built, "loaded": found}))
"""


def cuda_builds() -> str:
    """'' where PyTorch's CUDA build and JAX's CUDA 12 plugin are installed, else why not."""
    import importlib.metadata
    import importlib.util

    if "+cpu" in importlib.metadata.version("torch") or not importlib.util.find_spec("jax_cuda12_plugin"):
        return "the CPU builds are installed: nothing loads CUDA libraries (make run GPU=1 installs the CUDA builds)"
    return ""


def test_only_a_frameworks_own_libraries_come_first_on_its_workers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.config import RunConfig
    from common.run import launch

    monkeypatch.setattr(launch, "OWN_LIBRARIES", tmp_path)
    cfg = RunConfig(task="mnist")
    assert str(tmp_path) not in launch.worker_env(cfg, "pytorch")["PYTHONPATH"]  # the CPU set has none
    (tmp_path / "pytorch").mkdir()  # the CUDA set installed it
    assert launch.worker_env(cfg, "pytorch")["PYTHONPATH"].split(os.pathsep)[:2] == [
        str(ROOT),
        str(tmp_path / "pytorch"),
    ]
    for other in ("tensorflow", "jax"):
        assert str(tmp_path) not in launch.worker_env(cfg, other)["PYTHONPATH"]


def loaded_by(framework: str) -> dict:
    from common.config import RunConfig
    from common.run import launch

    env = launch.worker_env(RunConfig(task="mnist"), framework)
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, framework], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.jax
def test_each_framework_loads_the_cuda_libraries_it_was_built_for() -> None:
    """PyTorch (CUDA 13) its own cuDNN and NCCL from framework-libs/pytorch; JAX (CUDA 12) CUDA 12's from
    site-packages, where the Makefile put CUDA 12's last. Both wheels write the same files (README, "GPU builds")."""
    why = cuda_builds()
    if why:
        pytest.skip(why)
    torch = loaded_by("pytorch")
    assert "/framework-libs/pytorch/nvidia/cudnn/lib/" in torch["loaded"]["cudnn"]["path"]
    assert torch["loaded"]["cudnn"]["version"] == torch["built"]["cudnn"]  # 9.20
    assert str(torch["loaded"]["cudnn"]["cuda"]) == torch["built"]["cuda"].split(".")[0]  # 13
    assert torch["loaded"]["nccl"]["version"] == torch["built"]["nccl"]  # 2.29
    jax = loaded_by("jax")
    assert "/site-packages/nvidia/cudnn/lib/" in jax["loaded"]["cudnn"]["path"]
    assert str(jax["loaded"]["cudnn"]["cuda"]) == jax["built"]["cuda"].split(".")[0]  # 12
    # cuDNN 9 runs what was built with an older 9.x (JAX checks the same when it starts on a GPU).
    built, loaded = (tuple(map(int, v.split("."))) for v in (jax["built"]["cudnn"], jax["loaded"]["cudnn"]["version"]))
    assert loaded[0] == built[0] and loaded >= built
