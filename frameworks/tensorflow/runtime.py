"""Device, threads and numerics profile for TensorFlow, set before any op runs."""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from common.config import RunConfig
from common.environment import usable_cores
from common.errors import UserError


def configure(cfg: RunConfig) -> str:
    """Apply the run's device and profile; return the device name for results.json."""
    if cfg.threads:  # within one op, and between independent ops: both pools default to every core
        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
        tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
    # NVIDIA's GPUs in the CUDA build, AMD's in tensorflow-rocm, Apple's with tensorflow-metal: each shows as a "GPU".
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "cpu" and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    if cfg.device == "gpu" and not gpus:
        raise UserError(f"--device gpu: TensorFlow sees no GPU: {why_no_gpu()} (see README, GPU)")
    if gpus and cfg.parallel.enabled:
        gpus = gpus[: cfg.parallel.local_devices]  # MirroredStrategy takes every visible GPU it is given
        tf.config.set_visible_devices(gpus, "GPU")
    elif cfg.parallel.local_devices > 1:
        # Data-parallel on a CPU: all cores are one device unless split into logical ones, before
        # the runtime initialises. MirroredStrategy then runs one replica on each.
        logical = [tf.config.LogicalDeviceConfiguration()] * cfg.parallel.local_devices
        tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0], logical)
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)  # leave memory to measure peaks
    if gpus and cfg.profile == "strict":
        # TensorFlow runs fp32 matmuls and convolutions in TF32 on Ampere+ by default.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        tf.config.experimental.enable_op_determinism()
    # Keras makes the optimizer's learning-rate variable in floatx(), float32 by default, even
    # for float64 weights: lr = 0.05 would then carry a 7e-10 rounding error into every update.
    tf.keras.backend.set_floatx(cfg.dtype)
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"gpu:0 ({name})"
    return "cpu"


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """The float64 stages (common.stages) in a float32 run: Keras makes the optimizer's learning-rate
    variable in floatx() (see configure), so floatx is float64 while they run, then back."""
    before = tf.keras.backend.floatx()
    tf.keras.backend.set_floatx("float64")
    try:
        yield
    finally:
        tf.keras.backend.set_floatx(before)


def threads() -> int:
    """TensorFlow's intra-op pool size; 0 means its default, one thread per usable core."""
    return tf.config.threading.get_intra_op_parallelism_threads() or usable_cores()


def kernels(device: str) -> dict[str, Any]:
    """Whether TensorFlow runs oneDNN kernels here, and its thread pools, as TensorFlow reports them.

    `IsMklEnabled` is TensorFlow's own answer (TF_ENABLE_ONEDNN_OPTS, else its default rule for
    this CPU); it is private, so guarded. A pool size of 0 means TensorFlow's default: one
    thread per core this process may run on. On a GPU the convolutions are cuDNN's (MIOpen's in
    tensorflow-rocm; the Metal plugin's own on a Mac).
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn: bool | None = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    library = {True: "oneDNN", False: "Eigen"}.get(onednn, "unknown")  # oneDNN off: Eigen's own kernels
    if device.startswith("gpu"):
        info = tf.sysconfig.get_build_info()
        library = "cuDNN" if info.get("is_cuda_build") else "MIOpen" if info.get("is_rocm_build") else "GPU plugin"
    return {
        "library": library,
        "onednn": onednn,
        "threads": threads(),
        "interop_threads": tf.config.threading.get_inter_op_parallelism_threads() or usable_cores(),
    }


def versions() -> dict[str, str]:
    info = tf.sysconfig.get_build_info()
    build = f"CUDA {info['cuda_version']}, cuDNN {info['cudnn_version']}" if info.get("is_cuda_build") else "CPU"
    return {"version": tf.__version__, "build": f"{build}, Keras {tf.keras.__version__}"}


def devices() -> list[str]:
    """Every device TensorFlow sees here: its GPUs, then the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", "GPU") for gpu in gpus]
    return [*(f"gpu:{i} ({name})" for i, name in enumerate(names)), "cpu"]


def why_no_gpu() -> str:
    """Why TensorFlow sees no GPU: a CPU-only build (tensorflow-cpu), or a CUDA build whose libraries did not load."""
    info = tf.sysconfig.get_build_info()
    if not (info.get("is_cuda_build") or info.get("is_rocm_build")):
        try:  # pip's name for the CPU-only wheel; a CPU-only build from elsewhere is named by its version
            importlib.metadata.version("tensorflow-cpu")
            return "tensorflow-cpu is a CPU-only build"
        except importlib.metadata.PackageNotFoundError:
            return f"{tf.__version__} is a CPU-only build"
    if info.get("is_rocm_build"):
        return "a ROCm build that finds no GPU"
    return f"a CUDA {info.get('cuda_version')} build that finds no GPU: its log names the libraries it could not load"
