"""Shared starting points and the canonical checkpoint format every framework can read.

Canonical = PyTorch's state_dict layout (conv OIHW, linear (out, in), the fc columns in
C*H*W flatten order), stored as a plain .npz. Checkpoints are loaded with
allow_pickle=False: a file holding pickled objects is refused, never executed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.io import atomic_save_npz

CANONICAL_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (24, 1, 5, 5),
    "conv1.bias": (24,),
    "conv2.weight": (32, 24, 5, 5),
    "conv2.bias": (32,),
    "fc.weight": (10, 32 * 7 * 7),
    "fc.bias": (10,),
}
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
N_PARAMETERS = sum(int(np.prod(s)) for s in CANONICAL_SHAPES.values())  # 35,546


def plane_start(seed: int) -> tuple[float, float]:
    """The plane fit's starting (a, b), drawn once from the seed."""
    a, b = np.random.default_rng([seed, 0x9A]).uniform(-1.0, 1.0, size=2)
    return float(a), float(b)


def mnist_init(seed: int) -> dict[str, np.ndarray]:
    """Canonical initial weights, drawn with NumPy from PyTorch's default distribution.

    torch.nn.Conv2d and Linear draw weight and bias from U(-1/sqrt(fan_in), +1/sqrt(fan_in))
    (kaiming_uniform with a=sqrt(5)); drawing the same distribution here keeps the shared
    start statistically identical to a native PyTorch start.
    """
    rng = np.random.default_rng([seed, 0x1417])
    params = {}
    for name in ("conv1", "conv2", "fc"):
        shape = CANONICAL_SHAPES[f"{name}.weight"]
        bound = 1.0 / np.sqrt(np.prod(shape[1:]))
        params[f"{name}.weight"] = rng.uniform(-bound, bound, size=shape)
        params[f"{name}.bias"] = rng.uniform(-bound, bound, size=shape[:1])
    return {k: v.astype(np.float32) for k, v in params.items()}


def save_canonical(path: Path, params: dict[str, np.ndarray]) -> None:
    check_canonical(params, str(path))
    atomic_save_npz(path, params)


def load_canonical(path: str | Path) -> dict[str, np.ndarray]:
    """Load and check a canonical checkpoint; any defect is one UserError line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):  # np.load would return a bare array, or try to unpickle the file
        raise UserError(f"{path}: {not_npz_reason(path)}; save the canonical arrays with np.savez(path, **params)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            params = {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UserError(f"{path}: holds pickled objects, which are never loaded; save plain arrays") from None
        raise UserError(f"{path}: not a readable .npz checkpoint ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npz checkpoint ({exc})") from None
    check_canonical(params, str(path))
    return params


def not_npz_reason(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == NPY_MAGIC:
        return "a single .npy array, not a .npz checkpoint of named arrays"
    if magic.startswith(ZIP_MAGIC):
        return "a damaged .npz checkpoint (its zip archive is incomplete)"
    return "not a .npz checkpoint (np.savez writes a zip of named arrays)"


def check_canonical(params: dict[str, np.ndarray], where: str) -> None:
    missing = sorted(set(CANONICAL_SHAPES) - set(params))
    extra = sorted(set(params) - set(CANONICAL_SHAPES))
    if missing or extra:
        raise UserError(
            f"{where}: missing keys {missing}, unexpected keys {extra}; expected {sorted(CANONICAL_SHAPES)}"
        )
    for key, shape in CANONICAL_SHAPES.items():
        array = params[key]
        if array.shape != shape:
            raise UserError(f"{where}: {key} has shape {array.shape}, expected {shape}")
        if array.dtype.kind != "f":
            raise UserError(f"{where}: {key} has dtype {array.dtype}, expected floating point")
        if not np.all(np.isfinite(array)):
            raise UserError(f"{where}: {key} holds NaN or infinite values")
