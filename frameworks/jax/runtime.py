"""Device, precision and numerics profile for JAX, set before any array is made."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from common import hlo as hlo_text
from common.config import RunConfig
from common.environment import usable_cores
from common.errors import UserError
from common.parallel import process_rank

# NVIDIA's GPUs (jax[cuda12], jax[cuda13]) and AMD's (the ROCm plugin). Apple's jax-metal is left out: it
# supports only older JAX releases than the pinned one, and has no float64, which every MNIST run's stages need.
GPU_PLATFORMS = ("gpu", "cuda", "rocm")
CUDA_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")


def configure(cfg: RunConfig) -> str:
    """Apply the run's device and profile; return the device name for results.json."""
    if cfg.threads:
        # JAX has no thread-count setting: XLA sizes its CPU thread pool to the cores this
        # process may run on, so --threads N restricts the process to N of them (before the
        # first jax.devices() call creates the pool).
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: cfg.threads])
    if cfg.dtype == "float64" or cfg.parallel.enabled:  # data-parallel: its float64 reference steps
        jax.config.update("jax_enable_x64", True)  # JAX silently computes in float32 otherwise
    if cfg.parallel.enabled:
        # Both before the backend initialises: N devices on a CPU (a GPU backend ignores this),
        # and the process group of the multi-machine form (gloo collectives on a CPU, JAX's default).
        jax.config.update("jax_num_cpu_devices", cfg.parallel.local_devices)
        if cfg.parallel.processes:
            # The coordinator's address comes from JAX_COORDINATOR_ADDRESS (common.run.cluster).
            jax.distributed.initialize(num_processes=cfg.parallel.processes, process_id=process_rank())
    gpus = [d for d in jax.local_devices() if d.platform in GPU_PLATFORMS] if cfg.device != "cpu" else []
    if cfg.device == "gpu" and not gpus:
        raise UserError(f"--device gpu: JAX sees no GPU: {why_no_gpu()} (see README, GPU)")
    if gpus and cfg.profile == "strict":
        # JAX's default matmul/conv precision on NVIDIA GPUs may use TF32.
        jax.config.update("jax_default_matmul_precision", "highest")
    device = gpus[0] if gpus else jax.local_devices(backend="cpu")[0]
    jax.config.update("jax_default_device", device)
    return f"gpu:0 ({device.device_kind})" if gpus else "cpu"


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """The float64 stages (common.stages) in a float32 run: JAX computes in float32 unless x64 is on,
    so on while they run, and off again for the float32 training (jit caches the two apart)."""
    with jax.enable_x64(True):
        yield


def threads() -> int:
    """XLA's CPU thread pool has one thread per core this process may run on."""
    return usable_cores()


def kernels(device: str) -> dict[str, Any]:
    """Which kernels XLA compiled this model's convolutions to on `device`, its flags and its thread pool.

    XLA decides per operation when it compiles, so ask the compiler: compile conv2 and its two
    gradients at the model's shapes and read which fusion each convolution landed in
    (`__ynn_fusion`: YNNPACK; `__onednn_...`: oneDNN; unfused: XLA's convolution thunk, which
    calls Eigen). On a GPU, XLA calls cuDNN (MIOpen on ROCm) for them.
    """
    x = jnp.zeros((8, 14, 14, 24), jnp.float32)
    w = jnp.zeros((5, 5, 24, 32), jnp.float32)

    def loss(w: jax.Array, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y * y)

    try:
        hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(w, x).compile().as_text()
        places = sorted(set(hlo_text.conv_fusions(hlo)))
    except Exception:  # the record is a label: never fail a run over it
        places = []
    if device == "cpu":
        library = f"XLA:CPU, {hlo_text.library(places)}"
    else:
        library = "XLA:GPU, cuDNN" if cuda_plugins() else f"XLA:{jax.default_backend().upper()}"
    return {
        "library": library,
        "conv_fusions": places,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "threads": threads(),
    }


def versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    backend = jax.default_backend()
    build = "CPU" if backend == "cpu" else "CUDA" if cuda_plugins() else backend.upper()
    return {
        "version": jax.__version__,
        "build": f"{build}, jaxlib {jaxlib.__version__}, Flax {flax.__version__}, Optax {optax.__version__}",
    }


def devices() -> list[str]:
    """Every device JAX sees here: its GPUs (its default backend), then the CPU."""
    gpus = [d for d in jax.local_devices() if d.platform != "cpu"]
    return [*(f"gpu:{d.id} ({d.device_kind})" for d in gpus), "cpu"]


def why_no_gpu() -> str:
    """Why JAX sees no GPU: no CUDA plugin (jaxlib alone is CPU-only), or a plugin that found none."""
    plugins = cuda_plugins()
    if not plugins:
        return "no CUDA plugin, jaxlib alone is CPU-only"
    return f"{plugins[0].replace('_', '-')} finds no GPU: its log says why"


def cuda_plugins() -> list[str]:
    """JAX's CUDA plugins installed here (found without importing them)."""
    return [name for name in CUDA_PLUGINS if importlib.util.find_spec(name)]
