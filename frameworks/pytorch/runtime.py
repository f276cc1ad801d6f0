"""Device, threads and numerics profile for PyTorch, set before any tensor is made."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import torch

from common.config import RunConfig
from common.errors import UserError


def configure(cfg: RunConfig) -> str:
    """Apply the run's device and profile; return the device name for results.json."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # intra-op threads: the ones that run the convolutions
    elif cfg.parallel.enabled:
        torch.set_num_threads(1)  # one thread per replica process, as torchrun's OMP_NUM_THREADS=1
    use_gpu = cfg.device != "cpu" and torch.cuda.is_available()
    if cfg.device == "gpu" and not use_gpu:
        build = "a CUDA build" if torch.version.cuda else "a CPU-only build; see README, GPU"
        raise UserError(f"--device gpu: PyTorch sees no CUDA device ({build})")
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
    return "cpu"


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """The float64 stages (common.stages): PyTorch takes each tensor's dtype as given, so nothing to switch."""
    yield


def threads() -> int:
    """The intra-op threads PyTorch runs its CPU kernels on."""
    return torch.get_num_threads()


def torch_device(device: str) -> torch.device:
    return torch.device("cuda" if device.startswith("cuda") else "cpu")


def kernels() -> dict[str, Any]:
    """The kernel library PyTorch picks for this model's convolutions here, and its thread pools.

    Asked of PyTorch itself: `_select_conv_backend` is the function its convolution dispatches
    through (private, so guarded), fed conv2's shapes in the channels_last layout mnist.py uses.
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
    return info


def versions() -> dict[str, str]:
    build = "CPU"
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    return {"version": torch.__version__, "build": build}
