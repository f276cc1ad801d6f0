"""The shared datasets: the plane's five points and MNIST, plus the one batch order.

MNIST is read from the four original IDX files, each verified by SHA-256 before a byte of it
is parsed. Pixels are scaled and normalised here, once, so every framework sees the same
float values.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError

# The seed lecture's five points, verbatim: (x, y, value).
PLANE_POINTS = np.array(
    [
        [0.8345, 0.9785, 8.4596],
        [0.0993, 0.6754, 2.2981],
        [1.8054, 1.8001, 13.8385],
        [1.8896, 0.7385, 11.3696],
        [0.9817, 0.2224, 4.7279],
    ]
)

MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned byte, 1-D labels / 3-D images


@dataclass(frozen=True)
class Mnist:
    """Normalised images (N, 28, 28) and int labels (N,), for training and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def default_cache_dir() -> Path:
    """Where fetched MNIST files live when no --data-dir or $MNIST_DIR is given."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "triptych" / "mnist"


def resolve_data_dir(data_dir: str | None) -> Path:
    """--data-dir, else $MNIST_DIR, else the user cache directory."""
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            raise UserError(f"--data-dir {data_dir}: not a directory; create it or point elsewhere")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"--data-dir {data_dir}: not readable; fix its permissions")
        return path
    if os.environ.get("MNIST_DIR"):
        return resolve_data_dir(os.environ["MNIST_DIR"])
    return default_cache_dir()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    """Refuse a file whose SHA-256 is not the published one; it is never parsed."""
    actual = sha256_of(path)
    if actual != expected:
        raise UserError(
            f"{path}: SHA-256 mismatch (expected {expected}, got {actual}); "
            f"delete it and rerun to fetch it again, or replace it with the original IDX file"
        )


def missing_files(directory: Path) -> list[str]:
    return [name for name in MNIST_FILES if not (directory / name).is_file()]


def parse_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format) into a uint8 array."""
    raw = path.read_bytes()
    if len(raw) < 4:
        raise UserError(f"{path}: truncated IDX file ({len(raw)} bytes); fetch it again")
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if magic not in IDX_MAGIC.values():
        raise UserError(f"{path}: wrong IDX magic number 0x{magic:08x}; not an MNIST file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header; fetch it again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"{path}: {len(raw)} bytes, expected {expected} for shape {shape}; fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def normalise(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 pixels -> [0, 1] -> (x - mean) / std in `dtype`.

    Computed in float64 for the 256 possible pixel values, rounded once to `dtype`, then
    looked up: exact for float64 runs and fast (a table lookup, not 55M divisions).
    """
    table = ((np.arange(256) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(dtype)
    return table[images]


def load_pair(directory: Path, images_name: str, labels_name: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(directory / images_name)
    labels = parse_idx(directory / labels_name)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(f"{directory / images_name}: expected 3-D images and 1-D labels")
    if len(images) != len(labels):
        raise UserError(f"{directory / images_name}: {len(images)} images but {labels_name} has {len(labels)} labels")
    return normalise(images, dtype), labels.astype(np.int64)


def load_mnist(directory: Path, dtype: str = "float32", verify: bool = True) -> Mnist:
    """Verify (SHA-256) then parse the four IDX files in `directory`, images in `dtype`."""
    missing = missing_files(directory)
    if missing:
        raise UserError(f"{directory}: missing {', '.join(missing)}; run `make data` to fetch MNIST")
    if verify:
        for name, digest in MNIST_FILES.items():
            verify_file(directory / name, digest)
    train = load_pair(directory, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", dtype)
    test = load_pair(directory, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", dtype)
    return Mnist(*train, *test)


def training_subset(n_train: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the training examples used: the first `limit` of one seeded shuffle."""
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n_train)
    return order if limit is None else order[:limit]


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """(steps, batch_size) positions into the training subset for one epoch.

    One NumPy permutation per epoch, shared by every framework. The last partial batch is
    dropped so that every step has the same shape (compiled steps are traced once).
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


def chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    """Split an epoch's batch order into groups of `size` steps (one host read per group)."""
    return [order[i : i + size] for i in range(0, len(order), size)]
