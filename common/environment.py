"""The machine a run happened on, recorded with every result."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The x86 vector and matrix extensions that decide which kernels the frameworks pick (Linux
# /proc/cpuinfo names, in the order they appeared), e.g. TensorFlow turns oneDNN on by default
# only with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX.
VECTOR_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
    "sve",
)


def cpu_flags() -> set[str]:
    """The first processor's feature flags as Linux lists them (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# The CPU units oneDNN builds its bfloat16 convolutions for (/proc/cpuinfo names).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def onednn_bfloat16_lacking(flags: set[str] | None = None) -> str:
    """Why oneDNN cannot run bfloat16 convolutions on this x86 CPU, or '' where it can (or cannot tell).

    oneDNN builds them only with AVX512_BF16 or AMX_BF16, and ONEDNN_MAX_CPU_ISA can cap it below both.
    TensorFlow's Keras bfloat16 convolutions fail without (measured: "could not create a primitive
    descriptor" with ONEDNN_MAX_CPU_ISA=AVX2). Other architectures are not judged: ''.
    """
    flags = cpu_flags() if flags is None else flags
    if not flags & {"avx", "sse4_2"}:
        return ""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if not flags & set(BFLOAT16_FLAGS):
        return "this CPU has neither"
    # oneDNN's ISAs from AVX512_CORE_BF16 up (AVX512_CORE_FP16, AVX512_CORE_AMX, AVX10_1_512_AMX) keep them.
    if cap and not any(isa in cap for isa in ("ALL", "DEFAULT", "BF16", "FP16", "AMX", "AVX10")):
        return f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below them"
    return ""


def onednn_bfloat16(flags: set[str] | None = None) -> bool:
    """Whether oneDNN can run bfloat16 convolutions here (onednn_bfloat16_lacking says why not)."""
    return not onednn_bfloat16_lacking(flags)


def vector_extensions(flags: set[str] | None = None) -> list[str]:
    """['SSE4_2', 'AVX', 'AVX2', 'FMA'] on an AVX2-only x86 CPU; AVX-512 and AMX show when present."""
    flags = cpu_flags() if flags is None else flags
    return [f.upper() for f in VECTOR_FLAGS if f in flags]


def widest_vectors(flags: set[str] | None = None) -> str:
    """The widest vector or matrix unit the kernels can use here: AMX, AVX-512, AVX2, AVX, SVE, NEON or ''."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sve", "SVE")):
        if flag in flags:
            return name
    return "NEON" if flags & {"neon", "asimd"} else ""


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi lists them (name, driver); empty when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) == 3]


def gpu_visible() -> bool:
    """Whether any GPU can be visible to a framework here (NVIDIA's device files or nvidia-smi).

    Cheap and framework-free, so `--device gpu` on a machine without one is refused before
    three frameworks start up only to fail; which framework sees it is each worker's business.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return bool(list(Path("/dev").glob("nvidia[0-9]*"))) or bool(gpu_info())


# How the frameworks take GPU memory in every process that imports one: JAX reserves 75% of the GPU at its first
# operation and TensorFlow nearly all of it, so that a second process on the same GPU (the next framework's worker, a
# data-parallel rank, another pytest worker) would find none. PyTorch's caching allocator takes memory as it goes.
# Read when each framework initialises its GPU, so set before any framework is imported.
GPU_MEMORY = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def share_gpu_memory(env: MutableMapping[str, str]) -> None:
    """GPU_MEMORY into `env`: a worker's environment (common.run.launch), the test processes' (tests/conftest.py)."""
    env.update(GPU_MEMORY)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe(threads: int) -> dict[str, Any]:
    """Python, OS, CPU (with its vector extensions), cores, threads and GPUs; each framework adds its own."""
    return {
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "vector_extensions": vector_extensions(),
        "cores": usable_cores(),
        "threads": threads or usable_cores(),
        "gpus": gpu_info(),
        "frameworks": {},
    }
