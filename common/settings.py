"""Each framework's run settings: its own defaults, or the fastest documented settings measured here.

The settings that matter are environment variables a framework reads once, when it starts
(TensorFlow's oneDNN switch, XLA's flags, OpenMP's wait policy), so the launcher sets them in the worker's
environment (common.run.launch.worker_env) and nothing else does. This table is the one place
that says what "fastest" means for each framework, and why; docs/performance.md has the
measurements. A worker records what it ran with and what its framework reported at run time
(frameworks/<framework>/runtime.py, `kernels`).
"""

from __future__ import annotations

from dataclasses import dataclass

SETTINGS = ("defaults", "fastest")

# Training runs use "fastest": every parity check passes with it (docs/performance.md,
# "Settings"), and on the 2-core AVX2 machine it made TensorFlow's training step 2.4x faster.
TRAINING = "fastest"


@dataclass(frozen=True)
class Tuning:
    """Environment variables a framework reads at start-up, and the measurement that chose them."""

    env: tuple[tuple[str, str], ...]
    why: str


FASTEST: dict[str, Tuning] = {
    "pytorch": Tuning(
        (),
        "its defaults already run every convolution through oneDNN (torch.backends.mkldnn) in channels_last;"
        " OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning) cut the CPU per step 2.7x with the"
        " cores shared, but on a quiet machine it was slower (2,067 against 2,567 images/s at batch 100):"
        " an option for a busy machine, not the fastest setting (docs/performance.md, settings)",
    ),
    "tensorflow": Tuning(
        (("TF_ENABLE_ONEDNN_OPTS", "1"),),
        "Linux builds turn oneDNN on by default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX"
        " (tensorflow/core/util/port.cc); on an AVX2-only CPU, batch 100: 1,202 images/s with its Eigen kernels,"
        " 2,872 with oneDNN (docs/performance.md, settings)",
    ),
    "jax": Tuning(
        (),
        "XLA:CPU already runs the convolutions through its YNNPACK fusions; the oneDNN and XNNPACK flags left the"
        " compiled step unchanged (bit-identical losses) and the others were no faster (docs/performance.md,"
        " options measured)",
    ),
}

# Variables that would make "defaults" something else when inherited from the user's shell.
SWITCHES = tuple(sorted({name for tuning in FASTEST.values() for name, _ in tuning.env if name != "XLA_FLAGS"}))


def parse(text: str) -> tuple[str, ...]:
    """'defaults,fastest' -> ('defaults', 'fastest'); ValueError names anything unknown."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise ValueError(f"unknown settings {','.join(unknown) or repr(text)}; choose from {', '.join(SETTINGS)}")
    return names


def env_changes(framework: str, settings: str) -> dict[str, str | None]:
    """Variables to set (a value) or remove (None) in one framework's worker for these settings.

    "defaults" removes the switches, so that a variable set in the user's shell cannot make the
    defaults something else; XLA_FLAGS is shared with the user and the GPU profile, so a flag of
    ours is appended to it, never removed from it.
    """
    if settings == "defaults":
        return dict.fromkeys(SWITCHES)
    return dict(FASTEST[framework].env) if framework in FASTEST else {}


def describe(framework: str, settings: str) -> str:
    """'TF_ENABLE_ONEDNN_OPTS=1' or 'framework defaults': what a table says a row ran with."""
    if settings == "defaults" or not FASTEST.get(framework, Tuning((), "")).env:
        return "framework defaults"
    return " ".join(f"{k}={v}" for k, v in FASTEST[framework].env)
