"""Where the frameworks run by default: on one kind of device, so that the run can be compared.

Each framework on its own best device (--device each) can part them: on a Mac PyTorch takes Apple's GPU (MPS)
while TensorFlow and JAX stay on the CPU; on a machine with a GPU, the build of one framework may drive it and
the others' not. Frameworks on a GPU and on the CPU are not compared (parity.across_devices: no tolerance between
a GPU's and a CPU's training has been measured). So the default, --device auto, asks each framework where it
would run and, where some would take a GPU and others the CPU, runs all of them on the CPU, the device they
share, saying so in one line at the top of the run.

Asking costs a framework's import and device set-up (frameworks/probe.py), so only a framework whose installed
build can drive a GPU is asked (on a Mac with this project's set, PyTorch alone), and none where no GPU can be
seen (no NVIDIA or AMD device, not an Apple Silicon Mac): all run on the CPU there.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from common import environment
from common.config import RunConfig
from common.run import launch

ASK_SECONDS = 120.0  # a framework that has not answered by then is left to its own run to report


def gpu_possible() -> bool:
    """Whether some framework could see a GPU here: an Apple Silicon Mac, an AMD GPU (ROCm's /dev/kfd), an
    NVIDIA one (environment.gpu_visible). Cheap and framework-free."""
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    return apple or Path("/dev/kfd").exists() or environment.gpu_visible()


# The distributions that let a framework's build drive a GPU, PyTorch aside (its CPU-only builds carry "+cpu"):
# without one, the framework can only run on the CPU and is not asked. On a Mac TensorFlow needs tensorflow-metal.
GPU_BUILDS = {
    "tensorflow": re.compile(r"tensorflow(-rocm|-macos|-metal)?"),
    "jax": re.compile(r"jax-(cuda\d+-plugin|rocm\d+-plugin|metal)"),
}
MAC_TENSORFLOW = re.compile(r"tensorflow-metal")


def cpu_only(framework: str, installed: dict[str, str]) -> bool:
    """Whether the installed build of `framework` can only run on the CPU (`installed`: distribution -> version).

    torch 2.13.0+cpu, tensorflow-cpu, jax without a GPU plugin: the sets of constraints.txt on every platform
    but PyTorch's on a Mac (MPS) and on Linux aarch64 (PyPI's CUDA build), and TensorFlow's on Linux aarch64.
    """
    if framework == "pytorch":
        return installed.get("torch", "").endswith("+cpu")
    pattern = MAC_TENSORFLOW if framework == "tensorflow" and sys.platform == "darwin" else GPU_BUILDS[framework]
    return not any(pattern.fullmatch(name) for name in installed)


def distributions() -> dict[str, str]:
    """Every installed distribution's normalised name -> its version (package metadata: nothing imported)."""
    found = importlib.metadata.distributions()
    return {re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower(): d.version for d in found}


def names(frameworks: list[str]) -> str:
    return frameworks[0] if len(frameworks) == 1 else f"{', '.join(frameworks[:-1])} and {frameworks[-1]}"


def decide(landed: dict[str, str]) -> str | None:
    """The one line saying that all run on the CPU, where some frameworks would take a GPU and others the CPU.

    `landed`: framework -> the device it would run on, as its runtime.configure names it ("cpu", "mps",
    "cuda:0 (NVIDIA H200)", "gpu:0 (...)"). None where all would run on one kind of device: nothing to change.
    """
    gpu = [(framework, device) for framework, device in landed.items() if device != "cpu"]
    cpu = [framework for framework, device in landed.items() if device == "cpu"]
    if not gpu or not cpu:
        return None
    took = ", ".join(
        f"{framework} {'would take ' if i == 0 else ''}{device}" for i, (framework, device) in enumerate(gpu)
    )
    return (
        f"device: all on the CPU, the device they share: {took}, {names(cpu)} the CPU"
        " (--device each: each on its own device, and the run is not compared)"
    )


def ask(cfg: RunConfig) -> dict[str, str]:
    """framework -> the device its worker would run on: "cpu" for a CPU-only build, else asked in its own
    process (all at once). A framework not installed, or whose probe fails or does not answer, is left out: its
    run says why."""
    builds = distributions()
    present = [f for f in cfg.frameworks if not launch.missing_modules(f)]
    landed = {f: "cpu" for f in present if cpu_only(f, builds)}
    started = {f: probe(cfg, f) for f in present if f not in landed}
    landed |= {f: device for f, proc in started.items() if (device := answer(proc)) is not None}
    return {f: landed[f] for f in cfg.frameworks if f in landed}


def probe(cfg: RunConfig, framework: str) -> subprocess.Popen:
    """frameworks/probe.py for `framework`, in the environment its worker would have."""
    # LOCAL_RANK: PyTorch's configure takes its GPU from it in a data-parallel run (torchrun sets it).
    env = {"LOCAL_RANK": "0", **launch.worker_env(cfg, framework)}
    return subprocess.Popen(
        [sys.executable, "-m", "frameworks.probe", framework, json.dumps(cfg.to_dict())],
        cwd=launch.ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def answer(proc: subprocess.Popen) -> str | None:
    """The device one probe printed (its last line, JSON), or None."""
    try:
        out, _ = proc.communicate(timeout=ASK_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    lines = out.strip().splitlines()
    if proc.returncode or not lines:
        return None
    return json.loads(lines[-1])["device"]


def settle(cfg: RunConfig) -> RunConfig:
    """--device auto: `cfg` on the CPU where the frameworks would part (and the line said), else unchanged."""
    if cfg.device != "auto" or len(cfg.frameworks) < 2 or not gpu_possible():
        return cfg
    line = decide(ask(cfg))
    if line is None:
        return cfg
    print(line, file=sys.stderr, flush=True)
    return replace(cfg, device="cpu", device_choice=line)
