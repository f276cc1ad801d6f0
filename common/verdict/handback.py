"""What each framework's worker handed back, checked before the verdict reads a number of it.

A worker records its numbers in its results entry and its arrays in .npz files (stages/, probes/, loops/,
params/, logits/); the verdict compares them. An array in another dtype (NumPy reads bfloat16 as the void type
V2), of another shape, holding a NaN, or a key that is missing would crash the comparison after all the training,
or compare nonsense. Each such hand-back becomes one line naming the framework, the file, the key and what it
held; that framework is counted as failed, and the others are compared and written as always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import loop, stages
from common.config import RunConfig
from common.datasets import TEST_EXAMPLES
from common.weights import CANONICAL_SHAPES

ENTRY_NUMBERS = ("test_accuracy", "test_loss", "final_loss")


@dataclass(frozen=True)
class Spec:
    """An array's expected kind ('f' floating, 'i' integer), itemsize (0: any) and shape (None: any length there)."""

    kind: str
    itemsize: int
    shape: tuple[int | None, ...]


def arrays(cfg: RunConfig, framework: str) -> dict[str, dict[str, Spec]]:
    """Every file a training worker of this run writes, each key's Spec (relative paths under the run)."""
    m, b = cfg.mnist, cfg.mnist.batch_size
    size = np.dtype(m.dtype).itemsize  # a bfloat16 run reads its probes in the weights' dtype too
    if m.eval_params:
        return {f"logits/{framework}.npz": {"logits": Spec("f", size, (TEST_EXAMPLES, 10))}}
    f64 = {**recipe_step(8, b), **float_specs("update/", CANONICAL_SHAPES, 8)}
    f64 |= {"update/losses": Spec("f", 8, (stages.EPOCHS * stages.STEPS,))}
    f64 |= {"evaluation/logits": Spec("f", 8, (stages.EVAL_IMAGES, 10)), "evaluation/accuracy": Spec("f", 8, ())}
    files = {f"stages/{framework}.npz": f64, f"loops/{framework}.npz": loop_specs(cfg)}
    files[f"params/{framework}.npz"] = float_specs("", CANONICAL_SHAPES, size)
    if m.init == "shared":
        files[f"probes/{framework}.npz"] = {**recipe_step(size, b), "logits": Spec("f", size, (b, 10))}
        if m.precision != "float32":
            files[f"probes/{framework}-float32.npz"] = files[f"probes/{framework}.npz"]
    if cfg.parallel.enabled:
        engine = float_specs("parallel/params/", CANONICAL_SHAPES, 8) | float_specs(
            "parallel/grads/", CANONICAL_SHAPES, size
        )
        files[f"probes/{framework}-parallel.npz"] = engine | {"parallel/losses": f64["update/losses"]}
    return files


def recipe_step(size: int, b: int) -> dict[str, Spec]:
    """A probe of one batch: every layer's output, the loss and every gradient."""
    layers = {f"layer/{name}": Spec("f", size, (b, *shape)) for name, shape in stages.LAYER_SHAPES.items()}
    return layers | {"loss": Spec("f", size, ())} | float_specs("grad/", CANONICAL_SHAPES, size)


def float_specs(prefix: str, shapes: dict[str, tuple[int, ...]], size: int) -> dict[str, Spec]:
    """A float Spec of `size` bytes for each named shape, its key prefixed."""
    return {f"{prefix}{name}": Spec("f", size, shape) for name, shape in shapes.items()}


def loop_specs(cfg: RunConfig) -> dict[str, Spec]:
    """loops/<framework>.npz (common.recorder): lengths are the loop's own, compared by the loop check."""
    hyper = {f"hyper/{n}": Spec("f", 4, (None,)) for n in loop.HYPERPARAMETERS[cfg.mnist.optimizer]}
    ints = {
        "examples": Spec("i", 0, (None,)),
        "batch_sizes": Spec("i", 0, (None,)),
        "epoch_steps": Spec("i", 0, (None,)),
    }
    return ints | hyper


def problem(spec: Spec, value: np.ndarray) -> str:
    """What is wrong with one array, in words; '' where nothing is."""
    dtype = value.dtype
    if dtype.kind != spec.kind or (spec.itemsize and dtype.itemsize != spec.itemsize):
        shown = f"V{dtype.itemsize}, as NumPy reads bfloat16" if dtype.kind == "V" else dtype.name
        want = f"{'float' if spec.kind == 'f' else 'int'}{8 * spec.itemsize if spec.itemsize else ''}"
        return f"is {shown}, expected {want}"
    fits = len(value.shape) == len(spec.shape) and all(
        e in (None, n) for e, n in zip(spec.shape, value.shape, strict=True)
    )
    if not fits:
        return f"has shape {value.shape}, expected {tuple('N' if e is None else e for e in spec.shape)}"
    if spec.kind == "f" and not np.isfinite(value).all():
        bad = value.ravel()[~np.isfinite(value.ravel())][0]
        where = tuple(int(i) for i in np.unravel_index(np.flatnonzero(~np.isfinite(value))[0], value.shape))
        return f"holds {bad} at {where}"
    return ""


def file_problem(out_dir: Path, file: str, specs: dict[str, Spec]) -> str:
    """The first problem of one file the worker wrote, '' where it has none."""
    path = out_dir / file
    if not path.is_file():
        return f"no {file}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            held = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        return f"{file} that cannot be read ({exc})"
    for key, spec in specs.items():
        if key not in held:
            return f"{file} without {key}"
        found = problem(spec, held[key])
        if found:
            return f"{file} whose {key} {found}"
    return loop_problem(file, held) if file.startswith("loops/") else ""


def loop_problem(file: str, held: dict[str, np.ndarray]) -> str:
    """A loop record whose parts do not add up (common.recorder.loop writes them so that they do)."""
    steps = len(held["batch_sizes"])
    if int(held["batch_sizes"].sum()) != len(held["examples"]) or int(held["epoch_steps"].sum()) != steps:
        return f"{file} whose batch_sizes, examples and epoch_steps do not add up"
    if any(len(v) != steps for k, v in held.items() if k.startswith("hyper/")):
        return f"{file} whose hyperparameters are not one per step"
    return ""


def entry_problem(run: dict[str, Any]) -> str:
    """The results entry's own numbers: each one the verdict reads, finite."""
    for key in ENTRY_NUMBERS:
        value = run.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"an entry without {key}" if value is None else f"{key} = {value!r}"
        if not math.isfinite(value):
            return f"{key} = {value}"
    return ""


def checked(cfg: RunConfig, run: dict[str, Any]) -> dict[str, Any]:
    """The run as it came from its worker, or, where what it handed back cannot be compared, failed with why."""
    if run["status"] != "ok" or cfg.task != "mnist" or cfg.benchmark or cfg.checks_only or cfg.setup_only:
        return run
    name = run["framework"]
    found = "" if cfg.mnist.eval_params else entry_problem(run)
    for file, specs in arrays(cfg, name).items():
        found = found or file_problem(cfg.out_dir, file, specs)
    if not found:
        return run
    return {**run, "status": "failed", "error": f"{name} handed back {found}"}
