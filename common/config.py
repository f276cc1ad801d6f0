"""Frozen run configuration, built once by compare.py and handed to every framework; the framework registry.

The same object travels to each framework's subprocess as JSON, so every framework reads
identical numbers: nothing is re-derived from command-line arguments inside a framework.
REGISTRY is the one list of framework packages the driver, the contract and the page iterate over
(docs/adding-a-framework.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.settings import TRAINING


@dataclass(frozen=True)
class Framework:
    """One framework package, frameworks/<name>/; `name` is also its pyproject extra and its pytest marker."""

    name: str
    title: str  # as docs/side-by-side.html writes it
    modules: tuple[str, ...]  # what must be installed to run it, looked up without importing (common.run.launch)
    textbook: str  # the tutorial loop its textbook.py times, as the benchmark's tables name it
    # --precision values its mnist.py builds (docs/mixed-precision.md): float16 would need each framework's
    # loss scaling on a GPU, which none has yet
    precisions: tuple[str, ...] = ("float32",)


MIXED = ("float32", "bfloat16")  # float32, and bfloat16 mixed precision in the framework's own idiom
REGISTRY = (
    Framework("pytorch", "PyTorch", ("torch",), "DataLoader", MIXED),
    Framework("tensorflow", "TensorFlow", ("tensorflow",), "model.fit", MIXED),
    Framework("jax", "JAX", ("jax", "flax", "optax"), "Flax tutorial", MIXED),
)
FRAMEWORKS = tuple(f.name for f in REGISTRY)
BY_NAME = {f.name: f for f in REGISTRY}
TASKS = ("plane", "mnist")

# auto: one kind of device for all, the CPU where some would take a GPU and others not (common/run/placement.py);
# each: every framework its own best device.
Device = Literal["auto", "each", "cpu", "gpu"]
Dtype = Literal["float32", "float64"]
# --precision: "float32" computes in the weights' dtype; "bfloat16" is mixed precision (bfloat16 compute,
# float32 weights, gradients and optimizer state), each framework's own idiom (docs/mixed-precision.md).
PRECISIONS = ("float32", "bfloat16", "float16")
Precision = Literal["float32", "bfloat16", "float16"]
# --compile (benchmark only): "off" is the step training runs (PyTorch eager, TensorFlow tf.function, JAX jit);
# "on" compiles it whole (torch.compile, tf.function(jit_compile=True), JAX jit again).
COMPILES = ("off", "on")


@dataclass(frozen=True)
class PlaneConfig:
    """Gradient descent on the mean absolute error of f = a*x + b*y over five points."""

    # Constant-step gradient descent on an L1 loss circles the optimum at a distance that
    # shrinks with lr; these end within 0.5% of the optimum loss for seeds 0-19.
    lr: float = 0.005
    steps: int = 5000
    # float64 so that the sign of a residual near zero cannot differ between frameworks
    # through rounding; the L1 gradient is a sum of signs, so one flip changes the path.
    dtype: Dtype = "float64"


ADAM_LR = 0.001  # --optimizer adam's learning rate unless --lr is given (MnistConfig.lr is SGD's)


@dataclass(frozen=True)
class MnistConfig:
    """The MNIST CNN's training options (defaults reach 98.8% test accuracy on MNIST on average, not on every seed)."""

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"  # same files and shapes; common.datasets
    epochs: int = 2
    batch_size: int = 100
    # 0.02: 98.90 / 98.87 / 98.90% after 2 epochs (seed 0); 0.05 left TensorFlow at 98.44%. Over seeds
    # 0-4: 98.82 / 98.79 / 98.82% on average, 98.65 to 98.95% per seed (docs/differences.md, section 17).
    lr: float = 0.02
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9  # SGD only
    beta1: float = 0.9  # Adam only
    beta2: float = 0.999  # Adam only
    eps: float = 1e-8  # Adam only; see docs/differences.md for Keras's epsilon
    train_limit: int | None = None
    dtype: Dtype = "float32"
    precision: Precision = "float32"  # "bfloat16": mixed precision, the weights stay in `dtype`
    compiled: bool = False  # --benchmark --compile on: the step through each framework's compiler
    init: Literal["shared", "native"] = "shared"
    eval_batch_size: int = 1000
    eval_params: str | None = None  # score this canonical checkpoint instead of training
    log_every: int = 50  # steps between host reads of the loss (progress, NaN check)


LOOPS = ("project", "textbook")


def default_lr(optimizer: str) -> float:
    """The learning rate a run of this optimizer takes without --lr (compare.py, common.verdict.sweep)."""
    return ADAM_LR if optimizer == "adam" else MnistConfig.lr


@dataclass(frozen=True)
class BenchConfig:
    """Steady-state timing: `windows` windows of `window_steps` steps after `warmup_steps`.

    The tuples are the benchmark's axes: every combination of framework, settings, loop and
    batch size is one case (common.bench.cases.run), and the whole sequence runs `repeats`
    times in alternating framework order, so that a busy machine shows up as spread.
    """

    warmup_steps: int = 10
    window_steps: int = 20
    windows: int = 5
    batch_sizes: tuple[int, ...] = (100,)
    settings: tuple[str, ...] = ("defaults", "fastest")
    precisions: tuple[str, ...] = ("float32",)  # --precision float32,bfloat16
    compiles: tuple[str, ...] = ("off",)  # --compile off,on
    loops: tuple[str, ...] = ("project",)  # "textbook": each framework's tutorial loop as the bar
    repeats: int = 1
    profile: bool = False  # one more window of each loop under the framework's own profiler
    # --benchmark --devices 1,2: the data-parallel step on N devices (each engine's single-machine
    # form), timed against one device; on a CPU the N devices share its cores.
    devices: tuple[int, ...] = (1,)


# What the MNIST defaults are documented to reach (README); --seeds says how often they do.
DOCUMENTED_ACCURACY = 0.988


@dataclass(frozen=True)
class Margins:
    """--seeds: how far apart two frameworks may be and still count as equivalent (TOST).

    Five seeds at the defaults (docs/differences.md, section 17): seed-to-seed std 0.11 point and
    0.003 of loss; the widest paired 90% bound between frameworks 0.076 point and 0.0015. The
    margins are 2.3 and 3 seed stds: two seeds decide them for correct ports, and a port outside
    them is worse than an unlucky seed.
    """

    accuracy_points: float = 0.25
    test_loss: float = 0.01


@dataclass(frozen=True)
class ParallelConfig:
    """Data-parallel training (--devices, --processes): the global batch split over `devices` replicas."""

    devices: int = 1
    # None: each engine's single-machine form (torchrun --standalone, MirroredStrategy, one JAX
    # process); P: its multi-machine form as P processes on this machine, over the loopback.
    processes: int | None = None

    @property
    def enabled(self) -> bool:
        return self.devices > 1

    @property
    def local_devices(self) -> int:
        """Devices each process drives."""
        return self.devices // (self.processes or 1)


@dataclass(frozen=True)
class RunConfig:
    """Everything one invocation of compare.py needs."""

    task: Literal["plane", "mnist"]
    frameworks: tuple[str, ...] = FRAMEWORKS
    device: Device = "auto"
    device_choice: str = ""  # --device auto's line where it put every framework on the CPU (common.run.placement)
    fast: bool = False  # GPU: allow TF32 and non-deterministic kernels
    seed: int = 0
    seeds: tuple[int, ...] = ()  # --seeds: two or more seeds, each a whole run (common.verdict); () = one run of `seed`
    margins: Margins = field(default_factory=Margins)
    out: str = "runs/out"
    data_dir: str | None = None
    threads: int = 0  # 0: all cores
    timeout: float = 1800.0  # seconds per framework subprocess
    quiet: bool = False
    benchmark: bool = False
    # common.verdict.sweep: each seed's float64 stages and float32 first-step probes, without training.
    checks_only: bool = False
    # compare.py --check-setup: each framework's version, devices and kernels, without data or training.
    setup_only: bool = False
    settings: str = TRAINING  # "defaults" or "fastest" (common.settings): set before the framework starts
    plane: PlaneConfig = field(default_factory=PlaneConfig)
    mnist: MnistConfig = field(default_factory=MnistConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    @property
    def profile(self) -> str:
        """'strict' (parity-grade numerics) or 'fast' (framework defaults on a GPU)."""
        return "fast" if self.fast else "strict"

    @property
    def dtype(self) -> Dtype:
        """The floating-point type of the task being run."""
        return self.plane.dtype if self.task == "plane" else self.mnist.dtype

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        d["frameworks"] = tuple(d["frameworks"])
        d["seeds"] = tuple(d.get("seeds", ()))
        d["margins"] = Margins(**d.get("margins", {}))
        d["plane"] = PlaneConfig(**d["plane"])
        d["mnist"] = MnistConfig(**d["mnist"])
        bench = dict(d["bench"])
        # JSON has lists; the config keeps tuples
        for axis in ("batch_sizes", "settings", "precisions", "compiles", "loops", "devices"):
            if axis in bench:
                bench[axis] = tuple(bench[axis])
        d["bench"] = BenchConfig(**bench)
        d["parallel"] = ParallelConfig(**d.get("parallel", {}))
        return cls(**d)
