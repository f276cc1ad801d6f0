"""What every framework package defines, listed once: each module's top-level functions and classes.

The three packages keep the same function names so that they can be read side by side and driven
by one worker. A function only some frameworks need is listed with the frameworks that define it
and one line saying why the others do not; docs/side-by-side.html shows that line in the empty cells.
Each row also names the stage of the training recipe it belongs to (the page's section) and the rows
of docs/differences.md that show in its code.

The sources are read with `ast`, never imported, so the contract can be checked where no framework
is installed (tests/test_contract.py).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from common.config import FRAMEWORKS, REGISTRY

FRAMEWORK_TITLES = {f.name: f.title for f in REGISTRY}

# The comment lines that mark the same step in every training step (README, "Layout").
LANDMARKS = ("Forward pass", "Compute gradients", "Update weights")

# The method that runs the forward pass has a different name in each framework's module class; each
# returns the last of layer_outputs, every layer's output in order (the float64 stages compare them all).
FORWARD_METHODS = {"pytorch": "forward", "tensorflow": "call", "jax": "__call__"}
LAYER_OUTPUTS = "layer_outputs"


@dataclass(frozen=True)
class Fn:
    """A top-level function or class; `only` and `why` for one that some frameworks do not need."""

    name: str
    only: tuple[str, ...] = FRAMEWORKS
    why: str = ""


@dataclass(frozen=True)
class Row:
    """Functions read together, in file order: the same step on the same row of the page."""

    stage: str
    fns: tuple[Fn, ...]
    ledger: tuple[str, ...] = ()  # row numbers of docs/differences.md, as written there ("13b")


@dataclass(frozen=True)
class Module:
    """One file of every framework package, frameworks/<framework>/<name>.py."""

    name: str
    preface_stage: str  # where the module's docstring, imports and constants are shown
    rows: tuple[Row, ...]

    def fns(self) -> tuple[Fn, ...]:
        return tuple(fn for row in self.rows for fn in row.fns)

    def expected(self, framework: str) -> tuple[str, ...]:
        """The names this framework's file must define (in contract order, not file order)."""
        return tuple(fn.name for fn in self.fns() if framework in fn.only)


def one(stage: str, name: str, *ledger: str) -> Row:
    """A row of one function that every framework defines."""
    return Row(stage, (Fn(name),), ledger)


RUNTIME = Module(
    "runtime",
    "setup",
    (
        one("setup", "configure", "10", "11", "13", "13b"),
        one("setup", "float64", "10"),
        one("setup", "threads"),
        Row(
            "setup",
            (
                Fn(
                    "torch_device",
                    ("pytorch",),
                    "PyTorch places tensors by a torch.device argument; TensorFlow and JAX use the default"
                    " device that configure() chose",
                ),
            ),
        ),
        one("setup", "kernels", "13b"),
        one("setup", "versions"),
        one("setup", "devices"),
        one("setup", "why_no_gpu"),
        Row(
            "setup",
            (
                Fn(
                    "cuda_plugins",
                    ("jax",),
                    "JAX's CUDA support is a plugin package of its own; PyTorch and TensorFlow name their build"
                    " themselves (torch.version.cuda, tf.sysconfig.get_build_info)",
                ),
            ),
        ),
    ),
)

MNIST = Module(
    "mnist",
    "imports",
    (
        one("data", "to_device", "2", "12"),
        one("model", "Net", "3", "4", "18"),
        Row(
            "model",
            (
                Fn(
                    "max_pool",
                    ("jax",),
                    "PyTorch (F.max_pool2d) and Keras (MaxPooling2D) pool with their own op; JAX's reshape + max"
                    " trains 2.4x faster on XLA's CPU backend than nnx.max_pool",
                ),
            ),
            ("5", "14"),
        ),
        one("model", "create_model", "1", "11"),
        one("model", "load_params", "2"),
        one("model", "get_params"),
        one("loss", "loss_fn", "6", "18"),
        Row(
            "loss",
            (
                Fn(
                    "autocast",
                    ("pytorch",),
                    "--precision bfloat16: PyTorch's autocast is a context around the forward pass and the loss;"
                    " Keras (a dtype policy per layer) and Flax (dtype per module) build it into the layers",
                ),
            ),
        ),
        one("optimizer", "make_optimizer", "8", "9", "10"),
        one("optimizer", "hyperparameters", "19"),
        Row(
            "optimizer",
            (
                Fn(
                    "adam_epsilon",
                    ("tensorflow",),
                    "Keras adds Adam's epsilon before bias correction, PyTorch and Optax after it: Keras's epsilon is"
                    " set each step to the value that makes its update theirs",
                ),
            ),
            ("9",),
        ),
        one("step", "train_step"),
        one("loop", "train", "12", "15"),
        Row(
            "eval",
            (
                Fn(
                    "forward",
                    ("tensorflow", "jax"),
                    "PyTorch calls the model eagerly; TensorFlow and JAX compile the forward pass once per batch shape",
                ),
            ),
        ),
        one("eval", "predict"),
        one("eval", "probe"),
    ),
)

ABS_WHY = "jax.grad(jnp.abs)(0.0) is 1; PyTorch's and TensorFlow's |r| already have derivative 0 at 0"

PLANE = Module(
    "plane",
    "plane-loss",
    (
        Row("plane-loss", (Fn("abs_", ("jax",), ABS_WHY), Fn("abs_jvp", ("jax",), ABS_WHY)), ("7",)),
        one("plane-loss", "loss_fn"),
        Row(
            "plane-step",
            (
                Fn(
                    "train_step",
                    ("jax",),
                    "PyTorch steps in the body of fit_plane's loop, TensorFlow in a tf.function inside fit_plane",
                ),
                Fn("fit_plane"),
            ),
        ),
        one("plane-abs", "abs_grad_at_zero", "7"),
    ),
)

BENCH = Module(
    "bench",
    "bench",
    (
        one("bench", "benchmark", "13b"),
        one("bench", "benchmark_parallel", "16"),
        one("bench", "profile_ops"),
        one("bench", "gpu_matmul_gflops"),
    ),
)

PARALLEL = Module(
    "parallel",
    "dp-engine",
    (
        one("dp-engine", "setup", "16"),
        one("dp-engine", "shard"),
        one("dp-engine", "create_model"),
        Row(
            "dp-step",
            (
                Fn(
                    "loss_fn",
                    ("tensorflow",),
                    "DDP averages the replicas' gradients and XLA partitions the global-batch mean itself; under"
                    " MirroredStrategy each replica's loss must be its share of the global mean",
                ),
            ),
        ),
        one("dp-step", "train_step", "16"),
        one("dp-step", "gradients"),
        Row(
            "dp-step",
            (
                Fn(
                    "local",
                    ("jax",),
                    "a replicated JAX array may span other processes' devices, so each process reads its own copy;"
                    " PyTorch and TensorFlow replicas hold ordinary local tensors",
                ),
                Fn("canonical", ("jax",), "the same weights-to-canonical conversion for a model and its gradients"),
            ),
        ),
        one("dp-step", "get_params"),
        one("dp-loop", "train"),
        one("dp-loop", "close"),
    ),
)

TUTORIAL_STEP = (
    "the Flax NNX tutorial's own model, loss, jitted step and batches; PyTorch's example loop is written inline in"
    " benchmark, and Keras's is model.fit"
)

TEXTBOOK = Module(
    "textbook",
    "textbook",
    (
        Row(
            "textbook",
            (
                Fn(
                    "Laps",
                    ("tensorflow",),
                    "model.fit reports its steps to callbacks only, so the timing windows are a Keras callback",
                ),
                Fn("TutorialNet", ("jax",), TUTORIAL_STEP),
                Fn("loss_fn", ("jax",), TUTORIAL_STEP),
                Fn("train_step", ("jax",), TUTORIAL_STEP),
                Fn("make_batches", ("jax",), TUTORIAL_STEP),
            ),
            ("5",),
        ),
        one("textbook", "benchmark"),
        Row(
            "textbook",
            (
                Fn(
                    "epochs",
                    ("pytorch",),
                    "a DataLoader stops after one pass, and the timed windows run across epochs; Keras's fit and"
                    " the tutorial's batch iterator go on by themselves",
                ),
            ),
        ),
    ),
)

MODULES = (RUNTIME, MNIST, PARALLEL, PLANE, BENCH, TEXTBOOK)


def defined_names(source: str) -> list[str]:
    """Top-level functions and classes of a Python source, in file order."""
    tree = ast.parse(source)
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]


def module_problems(module: Module, framework: str, names: list[str]) -> list[str]:
    """What is wrong with one framework's file against the contract, one line per problem."""
    where = f"frameworks/{framework}/{module.name}.py"
    expected = module.expected(framework)
    listed = {fn.name for fn in module.fns()}
    problems = [f"{where} does not define {name} (common/contract.py)" for name in expected if name not in names]
    for name in names:
        if name not in listed:
            problems.append(
                f"{where} defines {name}, which common/contract.py does not list: add it to {module.name.upper()}"
                " (its stage, and which frameworks need it and why)"
            )
        elif name not in expected:
            problems.append(f"{where} defines {name}, which common/contract.py lists for other frameworks only")
    return problems


def order_problems(module: Module, names: dict[str, list[str]]) -> list[str]:
    """The functions every framework defines appear in the same order in every file."""
    shared = [fn.name for fn in module.fns() if fn.only == FRAMEWORKS]
    orders = {fw: [n for n in found if n in shared] for fw, found in names.items()}
    reference = FRAMEWORKS[0]
    first = orders[reference]
    return [
        f"frameworks/{fw}/{module.name}.py defines {', '.join(order)}; frameworks/{reference} has {', '.join(first)}"
        for fw, order in orders.items()
        if order != first and set(order) == set(first)
    ]


def problems(root: Path) -> list[str]:
    """Every contract violation of the framework packages under root/frameworks."""
    found: list[str] = []
    for module in MODULES:
        names = {fw: defined_names((root / "frameworks" / fw / f"{module.name}.py").read_text()) for fw in FRAMEWORKS}
        for fw in FRAMEWORKS:
            found += module_problems(module, fw, names[fw])
        found += order_problems(module, names)
    return found
