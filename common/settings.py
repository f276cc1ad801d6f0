"""Each framework's run settings: its own defaults, or the fastest ones measured in docs/performance.md.

What "fastest" is on the machine a benchmark runs on is that benchmark's finding, not this table's
(common.bench.cases.same_as_defaults, common.bench.summary.fastest_finding).

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

# --precision and --compile (docs/mixed-precision.md, docs/performance.md): training runs stay float32 and
# uncompiled unless --precision is given, whatever the benchmark finds fastest: parity first.
TRAINING_PRECISION = "float32"
TRAINING_COMPILE = "off"


@dataclass(frozen=True)
class Choice:
    """What a precision or compile setting runs in one framework, the kernels it reaches, and the measurement."""

    what: str
    kernels: str
    why: str


# Measured on two 2-core machines, batch 100, ratios within one run (docs/performance.md, "Mixed precision"):
# an AMD EPYC with AVX512_BF16 and no AMX, quiet (load average 0.7-1.6), and an Intel Xeon with AMX-BF16 and
# AVX512-BF16 while other jobs ran (load average 4.5-6.7).
BFLOAT16: dict[str, Choice] = {
    "pytorch": Choice(
        'torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass and the loss',
        "oneDNN brgemm kernels for both convolutions and the linear layer: avx10_1_512_amx on the Xeon,"
        " avx512_core_bf16 on the EPYC (the weight gradients there jit_bf16) (ONEDNN_VERBOSE=1)",
        "EPYC quiet: 1.57x its float32 images/s (5,293 against 3,378; 1.25x-1.67x over four runs): the"
        " convolutions 1.75-1.95x, max-pool slower in bfloat16. Xeon busy: 2.00x (443 against 221) on AMX",
    ),
    "tensorflow": Choice(
        "the mixed_bfloat16 policy on every layer but the output layer (float32, as Keras's guide says)",
        "oneDNN for the convolutions (avx10_1_512_amx on the Xeon, avx512_core_bf16 on the EPYC); the float32"
        " Dense layer through oneDNN's float32 gemm (x64:gemm:jit) (ONEDNN_VERBOSE=1)",
        "EPYC quiet: 1.47x its float32 images/s (7,337 against 5,004; 1.37x with 3 repeats): the weight"
        " gradients 1.38x, the input gradients 1.54x. Xeon busy: 2.87x (7,098 against 2,470) on AMX",
    ),
    "jax": Choice(
        "Flax dtype=bfloat16, param_dtype=float32 in every module; the loss on logits cast to float32",
        "XLA:CPU lowers 5 bfloat16 convolutions and 3 bfloat16 dots, then compiles all 8 in float32 with 92"
        " converts around them (the compiled HLO has no bf16 convolution or dot), on both CPUs: no AMX or"
        " AVX512-BF16 path",
        "0.70x its float32 images/s on the EPYC (1,809 against 2,578), 0.82x on the busy Xeon: the same float32"
        " YNNPACK convolutions, plus two float32 reduce-windows for the bias gradients (8% each) and the converts",
    ),
}
COMPILED: dict[str, Choice] = {
    "pytorch": Choice(
        "torch.compile(train_step), default mode (Inductor), forward, backward and optimizer in one graph",
        "Inductor's generated C++ plus oneDNN for the convolutions",
        "EPYC quiet: 0.64x eager in float32 (2,157 against 3,378), 0.60x in bfloat16; max-autotune-no-cudagraphs"
        " the same (0.64x, 0.68x): its generated loops for pooling, ReLU and the update, and a slower forward"
        " convolution, cost more than eager's kernels (profile). 18 s to compile, 5 s from Inductor's cache",
    ),
    "tensorflow": Choice(
        "tf.function(train_step, jit_compile=True): the step through XLA instead of the graph executor",
        "XLA:CPU's own convolutions, not oneDNN",
        "EPYC quiet: 0.48x the plain tf.function in float32 (2,380 against 5,004), 0.29x in bfloat16; Xeon busy"
        " 0.37x and 0.17x: XLA's CPU convolutions lose to oneDNN's, as measured on AVX2 before",
    ),
    "jax": Choice("jax.jit, as training runs it", "XLA:CPU (YNNPACK fusions)", "always compiled: off and on are one"),
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
