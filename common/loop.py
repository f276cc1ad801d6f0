"""The loop check: what each framework's own training loop did at every step of the real run, compared exactly.

The float64 stages follow the recipe through a few steps; training then runs for thousands, and a bug that acts
only later (a reshuffle forgotten at an epoch boundary, a schedule stepped per epoch, a learning rate changed at
some step) moves the float32 outcome by less than rounding does. What the recipe fixes for each step involves no
rounding at all: which examples the step trains on, the optimizer's hyperparameters in force, and how many steps
each epoch makes. Every framework's loop reports them (common.recorder: loops/<framework>.npz), and they are
compared exactly, step by step, between frameworks and with the recipe itself (common.data.batch_order and the
config's hyperparameters), so the loop that departs is named even where only two frameworks ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.config import MnistConfig
from common.data import batch_order, training_examples

RECIPE = "the recipe"
# The recipe's hyperparameters by optimizer, as MnistConfig names them; each framework reads its own optimizer's.
HYPERPARAMETERS = {"sgd": ("lr", "momentum"), "adam": ("lr", "beta1", "beta2")}
WORDS = {"lr": "learning rate"}  # the others read as they are named


def expected(m: MnistConfig, seed: int) -> dict[str, np.ndarray]:
    """The recipe's loop record for a run: the shared batch order of every epoch, constant hyperparameters."""
    orders = [batch_order(training_examples(m.train_limit), m.batch_size, seed, epoch) for epoch in range(m.epochs)]
    steps = sum(len(order) for order in orders)
    return {
        "examples": np.concatenate([order.ravel() for order in orders]).astype(np.int32),
        "batch_sizes": np.full(steps, m.batch_size, dtype=np.int32),
        **{f"hyper/{n}": np.full(steps, getattr(m, n), dtype=np.float32) for n in HYPERPARAMETERS[m.optimizer]},
        "epoch_steps": np.asarray([len(order) for order in orders], dtype=np.int32),
    }


def positions(epoch_steps: np.ndarray) -> list[tuple[int, int]]:
    """(epoch, step within it), both from 1, of every step of a loop."""
    return [(e + 1, s + 1) for e, n in enumerate(epoch_steps) for s in range(int(n))]


def step_name(i: int, place: list[tuple[int, int]]) -> str:
    """'step 601 (epoch 2, step 1)' for the step at index i of a loop."""
    return f"step {i + 1} (epoch {place[i][0]}, step {place[i][1]})" if i < len(place) else f"step {i + 1}"


def batches(record: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Each step's examples, cut from the flat record."""
    return np.split(record["examples"], np.cumsum(record["batch_sizes"])[:-1]) if len(record["batch_sizes"]) else []


def difference(r: dict[str, Any], s: dict[str, Any], i: int) -> str:
    """What differs at step i (in both loops) between two loop records, in words; '' where nothing does."""
    if r["_place"][i] != s["_place"][i]:
        (e, k), (f, j) = r["_place"][i], s["_place"][i]
        return f"another epoch boundary (epoch {e}, step {k} against epoch {f}, step {j})"
    a, b = r["_batches"][i], s["_batches"][i]
    if len(a) != len(b):
        return f"another batch size ({len(a)} against {len(b)})"
    if not np.array_equal(a, b):
        same = np.array_equal(np.sort(a), np.sort(b))
        return "another batch" + (" (the same examples in another order)" if same else "")
    for key in sorted({k for k in (*r, *s) if k.startswith("hyper/")}):
        word = WORDS.get(key.removeprefix("hyper/"), key.removeprefix("hyper/"))
        if key not in r or key not in s:
            return f"{word} recorded by one loop only"
        if r[key][i] != s[key][i]:  # a NaN differs too
            return f"another {word} ({r[key][i]!s} against {s[key][i]!s})"  # float32, in its shortest repr
    return ""


def items(r: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """[(where two loops first part, in how many steps they differ)], or [('every step', 0)] where they never do."""
    r, s = readable(r), readable(s)
    n, m = len(r["_batches"]), len(s["_batches"])
    differ = [i for i in range(min(n, m)) if difference(r, s, i)]
    count = len(differ) + abs(n - m)
    if not count:
        return [("every step", 0.0)]
    if differ:
        i = differ[0]
        return [(f"{step_name(i, r['_place'])}: {difference(r, s, i)}", float(count))]
    i, longer = min(n, m), r if n > m else s
    return [(f"{step_name(i, longer['_place'])}: one loop made {n} steps, the other {m}", float(count))]


def readable(record: dict[str, np.ndarray]) -> dict[str, Any]:
    """The record with each step's batch and (epoch, step) position, worked out once."""
    if "_batches" in record:
        return record
    return {**record, "_batches": batches(record), "_place": positions(record["epoch_steps"])}


def departures(records: dict[str, dict[str, np.ndarray]], recipe: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each framework whose loop departs from the recipe: where first, in words, and in how many steps."""
    found = {}
    recipe = readable(recipe)
    for name, record in records.items():
        (where, value), *_ = items(record, recipe)
        if value:
            found[name] = {"where": where, "value": value}
    return found
