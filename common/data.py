"""The shared data: the plane's five points, MNIST or Fashion-MNIST, and the one batch order.

The CNN's dataset is read from its four IDX files, raw or .gz, each verified by SHA-256 before
a byte of it is parsed (the hashes and their sources: `common.datasets`). Pixels are scaled
and normalised here, once, with the dataset's own mean and std, so every framework sees the
same float values. Nothing here writes a file: fetching, into the cache only, is `common.run.fetch`.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.datasets import FILE_NAMES, MNIST, RAW_SIZES, TRAIN_EXAMPLES, Dataset, get, identify
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

# Kept for callers written before Fashion-MNIST: MNIST's raw hashes and normalisation.
MNIST_FILES = {name: published.raw for name, published in MNIST.files.items()}
MNIST_MEAN = MNIST.mean
MNIST_STD = MNIST.std
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned byte, 1-D labels / 3-D images


@dataclass(frozen=True)
class Mnist:
    """Normalised images (N, 28, 28) and int labels (N,), for training and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def default_cache_dir(dataset: str = "mnist") -> Path:
    """Where fetched files of `dataset` live: the only directory triptych ever writes data into."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "triptych" / dataset


def user_data_dir(data_dir: str | None, dataset: str = "mnist") -> Path | None:
    """--data-dir, else $MNIST_DIR (for MNIST only), else None: the default sources.

    A directory named here is only ever read: missing files are an error, never fetched into it.
    """
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            raise UserError(f"--data-dir {data_dir}: not a directory; create it or point elsewhere")
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"--data-dir {data_dir}: not readable; fix its permissions")
        return path.resolve()
    if dataset == "mnist" and os.environ.get("MNIST_DIR"):
        return user_data_dir(os.environ["MNIST_DIR"], dataset)
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_file(directory: Path, name: str) -> Path | None:
    """`name`, else `name.gz`, in `directory`; None if neither is there."""
    for path in (directory / name, directory / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def missing_files(directory: Path) -> list[str]:
    """The four file names found in `directory` in neither form."""
    return [name for name in FILE_NAMES if find_file(directory, name) is None]


def fix_hint(directory: Path, dataset: Dataset) -> str:
    """What to do about a bad file, by whose directory it is in: ours, a package's, or the user's."""
    if directory == default_cache_dir(dataset.name):
        return "delete it and rerun to fetch it again"
    if str(directory) in dataset.system_dirs:
        return f"reinstall it: apt-get install --reinstall {dataset.system_package}"
    return f"replace it with the original {dataset.title} file (raw IDX or .gz)"


def refusal(where: str, problem: str, fix: str) -> UserError:
    """'WHERE: PROBLEM; FIX', leaving out an empty WHERE or FIX (a download lists its URL itself)."""
    message = f"{problem}; {fix}" if fix else problem
    return UserError(f"{where}: {message}" if where else message)


def gunzip(blob: bytes, limit: int, where: str = "", fix: str = "") -> bytes:
    """Decompress a gzip file in memory, stopping at `limit` bytes; a damaged one is a UserError."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        content = inflater.decompress(blob, limit + 1)
    except zlib.error as exc:
        raise refusal(where, f"damaged gzip file ({exc})", fix) from None
    if len(content) > limit:
        raise refusal(where, f"damaged gzip file (more than {limit} bytes inside)", fix)
    if not inflater.eof:
        raise refusal(where, f"damaged gzip file (truncated: ends after {len(blob)} bytes)", fix)
    return content


def verified_content(blob: bytes, name: str, dataset: Dataset, gz: bool, where: str = "", fix: str = "") -> bytes:
    """The IDX bytes of file `name` given as `blob` (raw, or .gz when `gz`), or a UserError.

    A raw file must match the published SHA-256 of the raw file. A .gz file is accepted when it
    is the published archive byte for byte, or when its content (decompressed in memory, bounded
    by the file's known size) matches the published raw hash: repackaging rewrites gzip headers
    (Debian's Fashion-MNIST has the upstream deflate streams under a new header), and a user's
    own `gzip` gives other bytes again, while the content is what is trained on. Either way
    everything accepted matches a published hash, and only then is it parsed as IDX.
    """
    published = dataset.files[name]
    digest = hashlib.sha256(blob).hexdigest()
    if gz and digest == published.gz:
        return gunzip(blob, RAW_SIZES[name], where, fix)
    content = gunzip(blob, RAW_SIZES[name], where, fix) if gz else blob
    actual = hashlib.sha256(content).hexdigest() if gz else digest
    if actual == published.raw:
        return content
    other = identify(name, digest) or identify(name, actual)
    if other is not None and other is not dataset:
        hint = f"pass --dataset {other.name}, or point --data-dir at the {dataset.title} files"
        raise refusal(where, f"this is {other.title}'s {name}, not {dataset.title}'s", hint)
    got = f"{digest} for the archive, {actual} for its content" if gz else actual
    expected = f"{published.gz} for the archive or {published.raw} for its content" if gz else published.raw
    raise refusal(where, f"SHA-256 mismatch (expected {expected}, got {got})", fix)


def read_verified(directory: Path, name: str, dataset: Dataset, verify: bool = True) -> bytes:
    """The IDX bytes of `name` from `directory` (raw or .gz, decompressed in memory), verified."""
    path = find_file(directory, name)
    if path is None:
        raise UserError(f"{directory}: missing {name} (raw or .gz)")
    blob = path.read_bytes()
    gz = path.suffix == ".gz"
    if not verify:
        return gunzip(blob, RAW_SIZES[name], str(path)) if gz else blob
    return verified_content(blob, name, dataset, gz, str(path), fix_hint(directory, dataset))


def missing_message(directory: Path, missing: list[str], dataset: Dataset) -> str:
    """Missing files in a directory that is only read: what to put there, or where else to look."""
    return (
        f"{directory}: missing {', '.join(missing)} (raw or .gz); triptych only reads this directory: "
        f"put the {dataset.title} files there, or run `{dataset.make_data}` and leave out --data-dir/$MNIST_DIR"
    )


def check_directory(directory: Path, dataset: Dataset) -> None:
    """Refuse a directory that lacks a file or holds one that fails its hash; read it, never write."""
    missing = missing_files(directory)
    if missing:
        raise UserError(missing_message(directory, missing, dataset))
    for name in FILE_NAMES:
        read_verified(directory, name, dataset)


def parse_idx(raw: bytes, where: Path | str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format) into a uint8 array."""
    if len(raw) < 4:
        raise UserError(f"{where}: truncated IDX file ({len(raw)} bytes); fetch it again")
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if magic not in IDX_MAGIC.values():
        raise UserError(f"{where}: wrong IDX magic number 0x{magic:08x}; not an MNIST file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{where}: truncated IDX header; fetch it again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"{where}: {len(raw)} bytes, expected {expected} for shape {shape}; fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def normalise(images: np.ndarray, dtype: str = "float32", dataset: Dataset = MNIST) -> np.ndarray:
    """uint8 pixels -> [0, 1] -> (x - mean) / std in `dtype`, with the dataset's own mean and std.

    Computed in float64 for the 256 possible pixel values, rounded once to `dtype`, then
    looked up: exact for float64 runs and fast (a table lookup, not 55M divisions).
    """
    table = ((np.arange(256) / 255.0 - dataset.mean) / dataset.std).astype(dtype)
    return table[images]


def load_pair(
    directory: Path, images_name: str, labels_name: str, dtype: str, dataset: Dataset, verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(read_verified(directory, images_name, dataset, verify), directory / images_name)
    labels = parse_idx(read_verified(directory, labels_name, dataset, verify), directory / labels_name)
    if images.ndim != 3 or labels.ndim != 1:
        raise UserError(f"{directory / images_name}: expected 3-D images and 1-D labels")
    if len(images) != len(labels):
        raise UserError(f"{directory / images_name}: {len(images)} images but {labels_name} has {len(labels)} labels")
    pixels = images if dtype == PIXELS else normalise(images, dtype, dataset)
    return pixels, labels.astype(np.int64)


PIXELS = "uint8"  # load_mnist's dtype for the pixels as stored, to normalise later (normalise_split)


def load_mnist(directory: Path, dtype: str = "float32", verify: bool = True, dataset: str = "mnist") -> Mnist:
    """Verify (SHA-256) then parse the four IDX files of `dataset` in `directory`, images in `dtype`
    (PIXELS: as stored)."""
    spec = get(dataset)
    missing = missing_files(directory)
    if missing:
        raise UserError(f"{directory}: missing {', '.join(missing)} (raw or .gz); run `{spec.make_data}`")
    train = load_pair(directory, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", dtype, spec, verify)
    test = load_pair(directory, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", dtype, spec, verify)
    return Mnist(*train, *test)


def normalise_split(pixels: Mnist, dtype: str, dataset: str = "mnist") -> Mnist:
    """Images loaded as PIXELS, normalised in `dtype`: one read of the files serves several dtypes."""
    spec = get(dataset)
    train, test = (normalise(images, dtype, spec) for images in (pixels.train_images, pixels.test_images))
    return Mnist(train, pixels.train_labels, test, pixels.test_labels)


def run_data_dir(data_dir: str | None, dataset: str) -> Path:
    """Where a worker reads: the directory compare.py prepared and verified, else the cache."""
    return Path(data_dir) if data_dir else default_cache_dir(dataset)


def training_examples(limit: int | None) -> int:
    """How many examples a run trains on: --train-limit, at most the whole training set (both datasets' size)."""
    return min(limit or TRAIN_EXAMPLES, TRAIN_EXAMPLES)


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
