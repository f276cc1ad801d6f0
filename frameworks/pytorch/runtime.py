"""Device, threads and numerics profile for PyTorch, set before any tensor is made."""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator
from typing import Any

import torch

from common.config import RunConfig
from common.errors import UserError

# Inside float64(): Apple's GPU has no float64 (MPS), so torch_device() puts what would go there on the CPU.
FLOAT64_ON_CPU = contextvars.ContextVar("FLOAT64_ON_CPU", default=False)


def configure(cfg: RunConfig) -> str:
    """Apply the run's device and profile; return the device name for results.json."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # intra-op threads: the ones that run the convolutions
    elif cfg.parallel.enabled:
        torch.set_num_threads(1)  # one thread per replica process, as torchrun's OMP_NUM_THREADS=1
    # NVIDIA's GPUs, and AMD's in PyTorch's ROCm build, which drives them through torch.cuda too.
    use_gpu = cfg.device != "cpu" and torch.cuda.is_available()
    # Apple's GPU (MPS) for float32 work on one device: MPS has no float64, so a float64 task stays on the CPU,
    # and so do a float32 run's float64 stages (float64()). Not yet run on a Mac (README, "GPU builds").
    use_mps = (
        cfg.device != "cpu"
        and not use_gpu
        and cfg.dtype == "float32"
        and not cfg.parallel.enabled
        and torch.backends.mps.is_available()
    )
    if cfg.device == "gpu" and not (use_gpu or use_mps):
        raise UserError(f"--device gpu: PyTorch sees no GPU: {why_no_gpu()} (see README, GPU)")
    if use_gpu and cfg.profile == "strict":
        # PyTorch lets cuDNN convolutions use TF32 by default; parity needs full fp32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)  # needs CUBLAS_WORKSPACE_CONFIG (set by the launcher)
        # cuDNN's deterministic weight-gradient algorithm for conv1 (one input channel) is
        # 1000x less exact: 3.8e-4 vs 3.8e-7 of the float64 gradient on an H200. PyTorch's own
        # CUDA convolutions are deterministic and exact to float32 rounding, if slower.
        torch.backends.cudnn.enabled = False
    if use_gpu and cfg.parallel.enabled:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))  # torchrun: one GPU per process on a machine
    if use_gpu:
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return "mps" if use_mps else "cpu"


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """The float64 stages (common.stages): PyTorch takes each tensor's dtype as given, so nothing to switch,
    except on Apple's GPU, which has no float64: there they run on the CPU."""
    token = FLOAT64_ON_CPU.set(True)
    try:
        yield
    finally:
        FLOAT64_ON_CPU.reset(token)


def threads() -> int:
    """The intra-op threads PyTorch runs its CPU kernels on."""
    return torch.get_num_threads()


def torch_device(device: str) -> torch.device:
    if device == "mps" and not FLOAT64_ON_CPU.get():
        return torch.device("mps")
    return torch.device("cuda" if device.startswith("cuda") else "cpu")


def kernels(device: str) -> dict[str, Any]:
    """The kernel library PyTorch picks for this model's convolutions on `device`, and its thread pools.

    On the CPU, asked of PyTorch itself: `_select_conv_backend` is the function its convolution
    dispatches through (private, so guarded), fed conv2's shapes in the channels_last layout mnist.py
    uses. On a GPU: cuDNN (MIOpen in the ROCm build), unless the strict profile turned it off
    (configure), when PyTorch's own CUDA convolutions run; Metal's on Apple's GPU.
    """
    info: dict[str, Any] = {
        "threads": threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA ATen dispatches to
        "onednn_available": torch.backends.mkldnn.is_available(),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
    }
    found = re.search(r"MKL-DNN (v[\d.]+)", torch.__config__.show())
    info["onednn_version"] = found.group(1) if found else None
    try:
        x = torch.zeros(8, 24, 14, 14).contiguous(memory_format=torch.channels_last)
        w = torch.zeros(32, 24, 5, 5).contiguous(memory_format=torch.channels_last)
        backend = torch._C._select_conv_backend(x, w, None, [1, 1], [2, 2], [1, 1], False, [0, 0], 1, None)
        info["conv_backend"] = str(backend).rsplit(".", 1)[-1]
    except (AttributeError, RuntimeError, TypeError):
        info["conv_backend"] = None
    names = {"Mkldnn": "oneDNN", "Slow2d": "ATen (im2col + BLAS)", "NnpackSpatial": "NNPACK"}
    info["library"] = names.get(info["conv_backend"] or "", info["conv_backend"] or "unknown")
    if device.startswith("cuda"):
        dnn = "MIOpen" if torch.version.hip else "cuDNN"
        info["library"] = dnn if torch.backends.cudnn.enabled else f"ATen CUDA ({dnn} off: strict profile)"
    elif device == "mps":
        info["library"] = "MPS (Metal Performance Shaders)"
    return info


def versions() -> dict[str, str]:
    build = "CPU"
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    elif torch.version.hip:
        build = f"ROCm {torch.version.hip}, MIOpen {torch.backends.cudnn.version()}"
    return {"version": torch.__version__, "build": build}


def devices() -> list[str]:
    """Every device PyTorch sees here: NVIDIA's or AMD's GPUs, Apple's (mps), the CPU."""
    found = []
    if torch.cuda.is_available():
        found = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def why_no_gpu() -> str:
    """Why PyTorch sees no GPU: its build, or a CUDA build that found none."""
    if not (torch.version.cuda or torch.version.hip):
        return f"{torch.__version__} is a CPU-only build"
    if torch.version.hip:
        return f"a ROCm {torch.version.hip} build that finds no GPU"
    return f"a CUDA {torch.version.cuda} build that finds no GPU: is the driver older than CUDA {torch.version.cuda}?"
