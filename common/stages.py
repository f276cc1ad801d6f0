"""The float64 stages, and the loop check: every step of the training recipe, compared across frameworks in every run.

In float64 the three frameworks compute the same numbers to about 1e-15, so any difference
above that is a porting bug, and the first stage where two frameworks part says where it
lives. From the shared start, on the run's own batches:

1. forward: every layer's output on the first batch, in the canonical layout (NCHW, C*H*W flatten);
2. loss: the mean cross-entropy on that batch;
3. gradients: each tensor's, on that batch, in the order backpropagation makes them;
4. loop: what the framework's own loop did at every step of the real run (the examples, the
   hyperparameters in force, the steps of each epoch), exactly (common.loop);
5. update: the framework's own training loop (its mnist.train) for EPOCHS tiny epochs over the
   run's first STEPS batches, with its per-epoch evaluation in between, so that an epoch boundary
   (a reshuffle, an optimizer's state, a schedule) is crossed in float64: each step's loss, then the weights;
6. evaluation: the framework's own predict on the first EVAL_IMAGES test images from those
   weights: the logits, and the accuracy computed from them.

Each framework computes them in its own worker before its float32 training
(frameworks/worker.py, stages/<framework>.npz; the loop's record after it, loops/<framework>.npz);
this module fixes their inputs and compares them. A data-parallel run also trains the update
stage through its engine, against the same framework's single-device stage (common.verdict.parity).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from common import loop
from common.data import Mnist, batch_order
from common.parallel import first_batches
from common.weights import CANONICAL_SHAPES

STAGES = ("forward", "loss", "gradients", "loop", "update", "evaluation")
LABELS = {
    "forward": "the forward pass",
    "loss": "the loss",
    "gradients": "the gradients",
    "loop": "the loop",
    "update": "the update",
    "evaluation": "the evaluation",
}
# Every layer's output for one example, in the canonical layout (NCHW; the flatten in C, H, W order).
LAYER_SHAPES = {
    "conv1": (24, 28, 28),
    "relu1": (24, 28, 28),
    "pool1": (24, 14, 14),
    "conv2": (32, 14, 14),
    "relu2": (32, 14, 14),
    "pool2": (32, 7, 7),
    "flatten": (32 * 7 * 7,),
    "fc": (10,),
}
LAYERS = tuple(LAYER_SHAPES)
BACKWARD = tuple(reversed(CANONICAL_SHAPES))  # fc first: the tensor nearest a fault parts first
STEPS = 10  # the update stage's steps in each epoch: the run's first STEPS batches
# Two epochs of them: the second crosses an epoch boundary (the reshuffle, the optimizer carried over, the
# evaluation in between) in float64 through the framework's own loop; docs/differences.md, "The loop check".
EPOCHS = 2
EVAL_IMAGES = 500
EVAL_BATCH = 200  # 200, 200, 100: predict's batching, the last one partial, is part of the stage
# float64, relative to each tensor's largest entry (the loss: to itself); measured <= 4e-15 on the
# stages' values, so 1e-12 keeps a 250x margin and still sees a float32 constant (1e-9; porting-bugs.md).
# The loop's record holds no rounding at all: exact.
TOLERANCE = {"forward": 1e-12, "loss": 1e-12, "gradients": 1e-12, "loop": 0.0, "update": 1e-12, "evaluation": 1e-12}
# Adam divides each coordinate's step by sqrt(v) + eps: where a gradient comes near eps (1e-8), a float64
# rounding difference in it moves that coordinate's step up to lr/eps times as much as SGD would. Measured with
# --optimizer adam: one fc weight of 15,680 apart by 4.5e-12 of the tensor max after the 10 steps (step losses
# 1e-15); 5 of 50 seeds past 1e-12, the worst 4.4e-12 (docs/differences.md, "With --optimizer adam"). So
# Adam's update stage has its own tolerance: 23x that worst seed, 10x below a float32 constant's 1e-9.
ADAM_UPDATE = 1e-10


def tolerance(stage: str, optimizer: str) -> float:
    """The stage's tolerance for a run with this optimizer: Adam's update stage has its own (ADAM_UPDATE)."""
    return ADAM_UPDATE if stage == "update" and optimizer == "adam" else TOLERANCE[stage]


def stage_rows(n: int, batch_size: int, seed: int, steps: int = STEPS) -> np.ndarray:
    """Positions into the run's training subset for the update stage's `steps * batch_size` examples.

    They are the run's first `steps` batches, placed so that the framework's own loop, drawing its
    batch order over them (common.data.batch_order, epoch 0), trains on them in the run's order.
    """
    first = first_batches(n, batch_size, seed, steps).ravel()
    visits = batch_order(len(first), batch_size, seed, 0).ravel()
    rows = np.empty_like(first)
    rows[visits] = first  # the loop's j-th example is the run's j-th
    return rows


def stage_data(data: Mnist, batch_size: int, seed: int) -> Mnist:
    """What the update and evaluation stages train and score on (the data in float64)."""
    rows = stage_rows(len(data.train_labels), batch_size, seed)
    return Mnist(
        data.train_images[rows], data.train_labels[rows], data.test_images[:EVAL_IMAGES], data.test_labels[:EVAL_IMAGES]
    )


def relative_to_max(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|a|, |b|); inf where the shapes differ (a layout fault)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return float(np.abs(a - b).max(initial=0.0) / scale) if scale > 0 else 0.0


def items(stage: str, r: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """(where, difference) for each thing a stage compares, in the order the recipe computes them."""
    if stage == "forward":
        return [(name, relative_to_max(r[f"layer/{name}"], s[f"layer/{name}"])) for name in LAYERS]
    if stage == "loss":
        return [("loss", relative_to_max(r["loss"], s["loss"]))]
    if stage == "gradients":
        return [(name, relative_to_max(r[f"grad/{name}"], s[f"grad/{name}"])) for name in BACKWARD]
    if stage == "loop":
        return loop.items(loop_record(r), loop_record(s))
    if stage == "update":
        losses = losses_apart(r["update/losses"], s["update/losses"])
        weights = [
            (f"{name} after the steps", relative_to_max(r[f"update/{name}"], s[f"update/{name}"]))
            for name in CANONICAL_SHAPES
        ]
        return losses + weights
    logits = relative_to_max(r["evaluation/logits"], s["evaluation/logits"])
    # Points of accuracy: the same logits to 1e-12 classify every image alike, so any difference parts.
    points = 100 * abs(float(r["evaluation/accuracy"]) - float(s["evaluation/accuracy"]))
    return [("logits", logits), ("accuracy (points)", points)]


def loop_record(record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The loop's record out of a framework's records (loops/<framework>.npz, read in as loop/...)."""
    return {k.removeprefix("loop/"): v for k, v in record.items() if k.startswith("loop/")}


def step_name(i: int, steps_per_epoch: int = STEPS) -> str:
    """'step 12 (epoch 2, step 2)' for the update stage's step at index i."""
    return f"step {i + 1} (epoch {i // steps_per_epoch + 1}, step {i % steps_per_epoch + 1})"


def losses_apart(a: np.ndarray, b: np.ndarray) -> list[tuple[str, float]]:
    """Each step's loss, relative; a loop that made another number of steps parts at the first missing one."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    found = [(step_name(i), float(abs(x - y) / abs(x))) for i, (x, y) in enumerate(zip(a, b, strict=False))]
    if len(a) != len(b):
        n = min(len(a), len(b))
        found.append((f"{step_name(n)} (one loop made {len(a)} steps, the other {len(b)})", float("inf")))
    return found


def persistent(found: list[tuple[str, float]], limit: float) -> tuple[list[tuple[str, float]], list[str]]:
    """The forward pass's differences that persist to the output, and the places whose difference does not.

    The forward stage observes each layer's output, but a framework may write into what was observed after it
    was observed (PyTorch's in-place ReLU), or fuse the next operation into the layer (Keras's
    `activation="relu"`): the observed tensor then differs while the next one, and the function, agree. A
    difference that vanishes at a later observation point is not a parting (docs/differences.md, "What the
    stages compare"): a framework parts at the first layer from which every later output differs too.
    """
    vanishes = [any(later <= limit for _, later in found[i + 1 :]) for i in range(len(found))]
    transient = [where for (where, v), gone in zip(found, vanishes, strict=True) if not v <= limit and gone]
    return [(where, v) for where, v in found if where not in transient], transient


def compare_pair(stage: str, r: dict[str, np.ndarray], s: dict[str, np.ndarray], limit: float) -> dict[str, Any]:
    """One stage, one pair: where they first part and by how much, or, if they agree, their largest difference.

    The first place that parts is the one to read (a fault moves everything after it), and its own
    difference keeps its own unit (an accuracy in points is never mixed with a logit's relative one).
    """
    found, transient = items(stage, r, s), []
    if stage == "forward":
        found, transient = persistent(found, limit)
    return {**first_apart(found, limit), **({"transient": transient} if transient else {})}


def first_apart(found: list[tuple[str, float]], limit: float) -> dict[str, Any]:
    """The first (where, difference) above `limit`, else the largest: {'value', 'where', 'passed'}."""
    parted = [(where, value) for where, value in found if not value <= limit]
    where, value = parted[0] if parted else max(found, key=lambda item: item[1])
    return {"value": value, "where": where, "passed": not parted}


def compare(
    records: dict[str, dict[str, np.ndarray]], optimizer: str, recipe: dict[str, np.ndarray] | None = None
) -> list[dict[str, Any]]:
    """Every stage for every pair of frameworks, in the recipe's order (results.json's parity.stages).

    The loop is compared where every framework recorded one (a training run), and with `recipe`, the loop the
    recipe prescribes (common.loop.expected): a framework whose loop departs from it is named there.
    """
    out = []
    looped = all(loop_record(r) for r in records.values())
    for stage in STAGES:
        if stage == "loop" and not looped:
            continue
        limit = tolerance(stage, optimizer)
        pairs = {
            f"{a} vs {b}": compare_pair(stage, records[a], records[b], limit)
            for a, b in itertools.combinations(records, 2)
        }
        entry = {"stage": stage, "tolerance": limit, "pairs": pairs}
        if stage == "loop" and recipe is not None:
            entry["recipe"] = loop.departures({n: loop_record(r) for n, r in records.items()}, recipe)
        passed = all(p["passed"] for p in pairs.values()) and not entry.get("recipe")
        out.append({**entry, "passed": passed})
    return out


def first_parting(stages: list[dict[str, Any]]) -> str:
    """'at the update: jax parts from pytorch and tensorflow at step 2 (the forward pass, ... agree)', or ''."""
    for i, stage in enumerate(stages):
        if stage["passed"]:
            continue
        agreed = [LABELS[s["stage"]].removeprefix("the ") for s in stages[:i]]
        before = f" ({join(agreed)} {'agrees' if len(agreed) == 1 else 'agree'})" if agreed else ""
        return f"at {LABELS[stage['stage']]}: {blame(stage)}{before}"
    return ""


def blame(stage: dict[str, Any]) -> str:
    """Who parts, from whom, and where, naming only what can be known.

    The loop has a reference, the recipe: the loops that depart from it are named. Elsewhere, one framework
    against all the others, which agree among themselves, is the odd one out; with two frameworks, or no
    majority, nobody can tell which one moved, so the frameworks of the pairs that part are named together.
    """
    pairs = stage["pairs"]
    names = list(dict.fromkeys(n for pair in pairs for n in pair.split(" vs ")))
    failed = {pair: p for pair, p in pairs.items() if not p["passed"]}
    departed = stage.get("recipe") or {}
    if departed:
        who = [n for n in names if n in departed]
        others = [n for n in names if n not in departed] + [loop.RECIPE]
        where = departed[who[0]]["where"]
        return f"{join(who)} {'parts' if len(who) == 1 else 'part'} from {join(others)} at {where}"
    for name in names:
        against = [pair for pair in pairs if name in pair.split(" vs ")]
        rest = [pair for pair in pairs if pair not in against]
        if len(names) > 2 and set(against) == set(failed) and all(pairs[p]["passed"] for p in rest):
            others = [n for n in names if n != name]
            return f"{name} parts from {join(others)} at {failed[against[0]]['where']}"
    involved = [n for n in names if any(n in pair.split(" vs ") for pair in failed)]
    return f"{join(involved)} part at {next(iter(failed.values()))['where']}"


def join(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def summary(record: dict[str, np.ndarray]) -> dict[str, Any]:
    """One framework's stage values worth reading in results.json (the arrays stay in stages/<framework>.npz)."""
    return {
        "loss": float(record["loss"]),
        "update_losses": [float(v) for v in record["update/losses"]],
        "evaluation_accuracy": float(record["evaluation/accuracy"]),
    }
