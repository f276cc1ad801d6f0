"""The CPU set of constraints.txt resolves on each platform `make run` is for: Linux x86-64, Linux aarch64 and
macOS arm64 (Python 3.11), from this machine.

uv resolves for another platform: `--python-platform` checks the wheels' tags and evaluates the environment
markers for the target (pip's `--platform` checks tags but evaluates markers for the machine it runs on). So a
pin with no wheel somewhere fails here. It needs the package index: where the index does not answer the test
skips saying so, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT
from tests.test_install import make, needs_make

# uv's target, the environment markers it evaluates there, and the oldest OS its wheels may ask for: PyTorch's
# macOS wheel is macosx_14_0_arm64, so the Mac set needs macOS 14 (uv's default target is macOS 13).
PLATFORMS = {
    "linux-x86_64": ("x86_64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "x86_64"}, {}),
    "linux-aarch64": ("aarch64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "aarch64"}, {}),
    "macos-arm64": (
        "aarch64-apple-darwin",
        {"sys_platform": "darwin", "platform_machine": "arm64"},
        {"MACOSX_DEPLOYMENT_TARGET": "14.0"},
    ),
}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # the Makefile adds it on Linux x86-64 where it answers
NETWORK = re.compile(r"dns error|error sending request|Failed to fetch|client error \(Connect\)|timed out")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_for(markers: dict[str, str]) -> dict[str, str]:
    """{package: version} of the lines of constraints.txt that hold on a platform with these `markers`."""
    environment = {"python_version": "3.11", "python_full_version": "3.11.0", **markers}
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(environment):
                found[normalise(req.name)] = str(req.specifier).lstrip("=")
    return found


def pip_sources() -> list[str]:
    """The indexes and wheel folders pip is configured with here (a mirror, a wheel on disk), as uv's options."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    options = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links"}
    args: list[str] = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        option = options.get(key.rsplit(".", 1)[-1])
        for source in value.strip("'\"").split() if option else ():
            local = source.removeprefix("file://")
            if "://" not in local and not Path(local).exists():
                continue  # pip warns about a missing folder and goes on; uv stops
            if [option, source] not in [args[i : i + 2] for i in range(0, len(args), 2)]:
                args += [option, source]
    return args


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def sources() -> list[str]:
    """Where pip looks, and on Linux x86-64 PyTorch's CPU index where it answers (resolve adds it), as make does."""
    return pip_sources()


@pytest.fixture(scope="module")
def torch_index() -> list[str]:
    return ["--extra-index-url", TORCH_CPU_INDEX] if answers(f"{TORCH_CPU_INDEX}/torch/") else []


def resolve(target: str, env: dict[str, str], sources: list[str]) -> subprocess.CompletedProcess:
    """`make run`'s install (the all and dev extras under constraints.txt), resolved for `target`, wheels only."""
    from uv import find_uv_bin

    command = [find_uv_bin(), "pip", "compile", "pyproject.toml", "--extra", "all", "--extra", "dev"]
    command += ["-c", "constraints.txt", "--python-platform", target, "--python-version", "3.11"]
    command += ["--only-binary", ":all:", "--index-strategy", "unsafe-best-match", "--no-header", "--no-annotate"]
    # --no-config: uv's own settings of this machine, if any, stay out; pip's sources come in `sources`.
    command += ["--quiet", "--no-config", *sources]
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False
    )


def not_reachable(proc: subprocess.CompletedProcess, platform: str, sources: list[str]) -> str | None:
    """Why the resolution could not be tried (no index; for Linux x86-64, no source of torch's +cpu wheel)."""
    found = NETWORK.search(proc.stderr)
    if found:
        return f"uv cannot reach the package index: {found.group()}"
    if platform == "linux-x86_64" and "torch==2.13.0+cpu" in proc.stderr and TORCH_CPU_INDEX not in sources:
        return f"torch 2.13.0+cpu: {TORCH_CPU_INDEX} does not answer and pip's config names no other source"
    return None


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_cpu_set_resolves_for_each_platform(platform: str, sources: list[str], torch_index: list[str]) -> None:
    """Every package the platform gets is pinned, at its pin, with the frameworks' versions everywhere."""
    target, markers, env = PLATFORMS[platform]
    if platform == "linux-x86_64":
        sources = [*sources, *torch_index]
    proc = resolve(target, env, sources)
    why = not_reachable(proc, platform, sources) if proc.returncode else None
    if why and os.environ.get("CI") != "true":
        pytest.skip(why)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = dict(normalise_pin(line) for line in proc.stdout.splitlines() if "==" in line)
    pins = pins_for(markers)
    assert sorted(set(chosen) - set(pins) - {"triptych"}) == []  # nothing unpinned
    assert {p: (pins[p], v) for p, v in chosen.items() if p in pins and pins[p] != v} == {}  # no pin moved
    x86 = platform == "linux-x86_64"
    assert chosen["torch"] == ("2.13.0+cpu" if x86 else "2.13.0")
    assert chosen["tensorflow-cpu" if x86 else "tensorflow"] == "2.21.0"
    assert ("tensorflow" if x86 else "tensorflow-cpu") not in chosen
    assert (chosen["jax"], chosen["jaxlib"], chosen["flax"], chosen["optax"]) == ("0.10.2", "0.10.2", "0.12.8", "0.2.8")
    # PyPI's torch for Linux aarch64 is its CUDA 13 build; the other two sets hold no CUDA library.
    assert any(p.startswith("nvidia-") for p in chosen) == (platform == "linux-aarch64")


def normalise_pin(line: str) -> tuple[str, str]:
    name, _, version = line.partition("==")
    return normalise(name.strip()), version.strip()


def test_a_platform_line_holds_on_its_platform_only() -> None:
    """The marked lines of constraints.txt, as pip reads them on each platform: one torch, one TensorFlow."""
    got = {platform: pins_for(markers) for platform, (_, markers, _) in PLATFORMS.items()}
    assert [(got[p]["torch"], "tensorflow-cpu" in got[p], "tensorflow" in got[p]) for p in PLATFORMS] == [
        ("2.13.0+cpu", True, False),
        ("2.13.0", False, True),
        ("2.13.0", False, True),
    ]
    shared = set(got["linux-x86_64"]) & set(got["linux-aarch64"]) & set(got["macos-arm64"])
    assert {p for p in shared if len({got[q][p].split("+")[0] for q in PLATFORMS}) > 1} == set()


@needs_make
@pytest.mark.parametrize(
    ("system", "index"), [("Linux x86_64", True), ("Linux aarch64", False), ("Darwin arm64", False)]
)
def test_make_adds_pytorchs_cpu_index_on_linux_x86_64_only(tmp_path: Path, system: str, index: bool) -> None:
    """Elsewhere the set pins PyPI's torch, and pip reads PyPI alone: the set the test above resolved."""
    kernel, machine = system.split()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "uname").write_text(f'#!/bin/sh\ncase "$1" in -s) echo {kernel};; -m) echo {machine};; esac\n')
    (tmp_path / "bin" / "uname").chmod(0o755)
    proc = make(tmp_path, None, "-n", "run")
    assert proc.returncode == 0, proc.stderr
    [install] = [line for line in proc.stdout.splitlines() if '-e ".[all,dev]"' in line]
    assert (TORCH_CPU_INDEX in install) is index
