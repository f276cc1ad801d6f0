"""`make gpu-check`: where a machine with an NVIDIA GPU stands, in one screen.

What nvidia-smi lists, what each framework sees (compare.py --check-setup), a short run on the GPU in the strict
profile that must AGREE, and the same run with --fast, with its looser float32 tolerances. Each step is compare.py
itself in a process of its own, as a user runs it; its results stay in the output directory. Without a GPU there is
nothing to check: one line says so (the CPU's checks are `make test`) and the exit code is 1, as for a check that
failed, so that a GPU job on a machine that lost its GPU does not pass.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import environment, table
from common.config import FRAMEWORKS
from common.verdict import parity

ROOT = Path(__file__).resolve().parents[2]
# One epoch on 5,000 images: long enough for the outcome checks, a minute or two on a GPU.
SHORT = ("--task", "mnist", "--epochs", "1", "--train-limit", "5000")


def no_gpu() -> str:
    """Why nvidia-smi shows no GPU here, in the Makefile's words; '' where it lists one."""
    if environment.gpu_info():
        return ""
    return "nvidia-smi lists no GPU" if shutil.which("nvidia-smi") else "nvidia-smi not found"


def compare_py(*args: str) -> subprocess.CompletedProcess:
    """compare.py in its own process (stdout and stderr kept: the screen shows what matters, the files the rest)."""
    cmd = [sys.executable, str(ROOT / "compare.py"), "--quiet", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def on_gpu(out: Path) -> dict[str, bool]:
    """{framework: whether it runs on a GPU} from --check-setup's records (its --out keeps them), in their order."""
    found = {}
    for name in FRAMEWORKS:
        path = out / "runs" / f"{name}.json"
        if path.is_file():
            run = json.loads(path.read_text())
            found[name] = run.get("status") == "ok" and run.get("device") not in (None, "cpu")
    return found


def run_lines(doc: dict[str, Any], checks: bool) -> list[str]:
    """A run in a few lines: its table (or, with `checks`, its parity checks and their tolerances) and its verdict."""
    if checks and doc["parity"]["checks"]:
        shown = table.text(*table.checks_table(doc["parity"]["checks"]))
    else:
        shown = table.text(*table.runs_table(doc))
    return [*shown.splitlines(), parity.headline(doc["parity"])]


def trained(name: str, frameworks: list[str], out: Path, *extra: str) -> tuple[bool, list[str]]:
    """One short run on the GPU: whether it agreed, and its lines (compare's error where it could not run)."""
    proc = compare_py(*SHORT, "--device", "gpu", "--frameworks", ",".join(frameworks), *extra, "--out", str(out))
    if not (out / "results.json").is_file():
        return False, [f"{name}: compare.py exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"]
    doc = json.loads((out / "results.json").read_text())
    agree = parity.status_of(doc["parity"]) == parity.AGREE and proc.returncode == 0
    title = f"{name} (compare.py {' '.join([*SHORT, '--device', 'gpu', *extra])}):"
    return agree, [title, *run_lines(doc, bool(extra))]


def check(out: Path) -> int:
    """Every step, printed as it ends; 0 only where two or more frameworks run on the GPU and both runs AGREE."""
    for gpu in environment.gpu_info():
        print(f"GPU: {gpu['name']}, {gpu['memory']}, driver {gpu['driver']}")
    setup = compare_py("--check-setup", "--out", str(out / "setup"))
    print(setup.stdout.rstrip())
    found = on_gpu(out / "setup")
    gpus = [name for name, yes in found.items() if yes]
    left = [name for name, yes in found.items() if not yes]
    if len(gpus) < 2:
        print(
            f"gpu-check: {len(gpus)} framework{'' if len(gpus) == 1 else 's'} on the GPU, nothing to compare"
            f" ({', '.join(left)}: see the lines above)"
        )
        return 1
    results = []
    for name, extra in (("strict", ()), ("fast", ("--fast",))):
        agree, lines = trained(name, gpus, out / name, *extra)
        print("\n" + "\n".join(lines), flush=True)
        results.append(f"{name} {'AGREE' if agree else 'FAILED'}")
    without = f"; {', '.join(left)} on the CPU, left out" if left else ""
    print(f"\ngpu-check: {', '.join(results)} ({', '.join(gpus)} on the GPU{without}); everything in {out}")
    return 0 if all(r.endswith("AGREE") for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Where this machine's NVIDIA GPU stands, in one screen.")
    parser.add_argument("--out", help="output directory (default runs/gpu-check-<timestamp>)")
    args = parser.parse_args(argv)
    why = no_gpu()
    if why:
        print(f"gpu-check: no NVIDIA GPU here ({why}): nothing to check on a GPU; the CPU's checks are make test")
        return 1
    return check(Path(args.out or f"runs/gpu-check-{time.strftime('%Y%m%d-%H%M%S')}").resolve())


if __name__ == "__main__":
    sys.exit(main())
