"""Device, precision and numerics profile for JAX, set before any array is made."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

from common import hlo as hlo_text
from common.config import RunConfig
from common.errors import UserError


def configure(cfg: RunConfig) -> str:
    """Apply the run's device and profile; return the device name for results.json."""
    if cfg.threads:
        # JAX has no thread-count setting: XLA sizes its CPU thread pool to the cores this
        # process may run on, so --threads N restricts the process to N of them (before the
        # first jax.devices() call creates the pool).
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: cfg.threads])
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # JAX silently computes in float32 otherwise
    gpus = [d for d in jax.devices() if d.platform == "gpu"] if cfg.device != "cpu" else []
    if cfg.device == "gpu" and not gpus:
        raise UserError("--device gpu: JAX sees no GPU (jaxlib without CUDA? see README, GPU)")
    if gpus and cfg.profile == "strict":
        # JAX's default matmul/conv precision on NVIDIA GPUs may use TF32.
        jax.config.update("jax_default_matmul_precision", "highest")
    device = gpus[0] if gpus else jax.devices("cpu")[0]
    jax.config.update("jax_default_device", device)
    return f"gpu:0 ({device.device_kind})" if gpus else "cpu"


def kernels() -> dict[str, Any]:
    """Which kernels XLA compiled this model's convolutions to here, its flags and its thread pool.

    XLA decides per operation when it compiles, so ask the compiler: compile conv2 and its two
    gradients at the model's shapes and read which fusion each convolution landed in
    (`__ynn_fusion`: YNNPACK; `__onednn_...`: oneDNN; unfused: XLA's convolution thunk, which
    calls Eigen).
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
    cpu = jax.default_backend() == "cpu"
    return {
        "library": f"XLA:CPU, {hlo_text.library(places)}" if cpu else f"XLA:{jax.default_backend()}",
        "conv_fusions": places,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        # XLA sizes its CPU thread pool to the cores this process may run on (configure()).
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
    }


def versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    backend = jax.default_backend()
    build = "CUDA" if backend == "gpu" else "CPU"
    return {
        "version": jax.__version__,
        "build": f"{build}, jaxlib {jaxlib.__version__}, Flax {flax.__version__}, Optax {optax.__version__}",
    }
