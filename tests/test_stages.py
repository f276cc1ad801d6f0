"""common/stages.py without a framework: the stage data, the comparison and the verdict's words."""

from __future__ import annotations

import numpy as np
import pytest

from common import loop, stages, table
from common.config import MnistConfig
from common.data import Mnist, batch_order
from common.parallel import first_batches, prefixed
from common.verdict import parity
from common.weights import CANONICAL_SHAPES


def test_the_loop_over_the_stage_rows_takes_the_runs_first_batches_in_order() -> None:
    """mnist.train draws batch_order over the stage data; it must meet the run's first STEPS batches."""
    n, b, seed = 5000, 100, 3
    rows = stages.stage_rows(n, b, seed)
    visits = batch_order(len(rows), b, seed, epoch=0)
    np.testing.assert_array_equal(rows[visits], first_batches(n, b, seed, stages.STEPS))
    np.testing.assert_array_equal(rows[visits[0]], batch_order(n, b, seed, epoch=0)[0])  # the probes' batch


def test_stage_data_cuts_the_test_set_to_the_evaluation_slice() -> None:
    images = np.arange(3000 * 4).reshape(3000, 2, 2)
    data = Mnist(images[:2000], np.arange(2000), images[2000:], np.arange(1000))
    cut = stages.stage_data(data, 20, 0)
    assert cut.train_images.shape == (stages.STEPS * 20, 2, 2) and len(cut.test_labels) == stages.EVAL_IMAGES
    np.testing.assert_array_equal(cut.train_labels, stages.stage_rows(2000, 20, 0))


# A run's recipe small enough to read: 3 epochs of 10 steps of 20 examples.
RUN = MnistConfig(train_limit=200, batch_size=20, epochs=3)


def record(seed: int = 0, **changes: object) -> dict[str, np.ndarray]:
    """A synthetic stage record with the keys a worker writes, and the loop's record as the recipe has it."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {f"layer/{name}": rng.normal(size=(4, 3)) for name in stages.LAYERS}
    out["loss"] = np.asarray(2.3)
    for name, shape in CANONICAL_SHAPES.items():
        out[f"grad/{name}"] = rng.normal(size=shape)
        out[f"update/{name}"] = rng.normal(size=shape)
    out["update/losses"] = np.linspace(2.3, 1.5, stages.EPOCHS * stages.STEPS)
    out["evaluation/logits"] = rng.normal(size=(stages.EVAL_IMAGES, 10))
    out["evaluation/accuracy"] = np.asarray(0.75)
    out |= prefixed("loop", loop.expected(RUN, 0))
    return {**out, **changes}


STAGE_INDEX = {stage: i for i, stage in enumerate(stages.STAGES)}


def parted(records: dict[str, dict[str, np.ndarray]], recipe: dict[str, np.ndarray] | None = None) -> str:
    return stages.first_parting(stages.compare(records, "sgd", recipe))


def test_identical_records_agree_everywhere() -> None:
    result = stages.compare({"pytorch": record(), "tensorflow": record(), "jax": record()}, "sgd")
    assert [s["stage"] for s in result] == list(stages.STAGES)
    assert all(s["passed"] for s in result) and stages.first_parting(result) == ""


def moved(good: dict[str, np.ndarray], layers: tuple[str, ...], by: float = 1.0) -> dict[str, np.ndarray]:
    return record(**{f"layer/{name}": good[f"layer/{name}"] + by for name in layers})


def test_the_first_stage_and_layer_that_part_are_named_with_the_odd_one_out() -> None:
    good = record()
    bad = moved(good, stages.LAYERS[2:], 1e-9)  # pool1 and everything after it
    text = parted({"pytorch": good, "tensorflow": good, "jax": bad})
    assert text == "at the forward pass: jax parts from pytorch and tensorflow at pool1"


def test_a_difference_that_vanishes_at_the_next_layer_is_not_a_parting() -> None:
    """PyTorch's in-place ReLU writes into conv1's output after the stage observed it (or Keras fuses the ReLU
    into Conv2D): conv1 differs, relu1 and everything after agree, so the function is the same."""
    good = record()
    in_place = moved(good, ("conv1",))
    result = stages.compare({"pytorch": in_place, "tensorflow": good, "jax": good}, "sgd")
    forward = result[STAGE_INDEX["forward"]]
    assert forward["passed"] and stages.first_parting(result) == ""
    assert forward["pairs"]["pytorch vs jax"] == {
        "value": 0.0,
        "where": "relu1",
        "passed": True,
        "transient": ["conv1"],
    }
    # One that persists from a later layer on is named there, the earlier vanishing one not.
    both = moved(good, ("conv1", *stages.LAYERS[3:]))
    assert parted({"pytorch": both, "tensorflow": good, "jax": good}).startswith(
        "at the forward pass: pytorch parts from tensorflow and jax at conv2"
    )


def test_with_two_frameworks_nobody_is_blamed() -> None:
    """Which of two frameworks moved cannot be known: both are named, as parting together."""
    good = record()
    bad = record(**{"grad/conv1.weight": good["grad/conv1.weight"] * 2, "grad/fc.bias": good["grad/fc.bias"] * 2})
    text = parted({"pytorch": bad, "tensorflow": good})
    assert text == "at the gradients: pytorch and tensorflow part at fc.bias (forward pass and loss agree)"


def test_an_update_parts_at_its_first_step_and_a_short_loop_at_its_missing_step() -> None:
    good = record()
    later = good["update/losses"].copy()
    later[11] += 1e-6
    assert parted({"pytorch": good, "jax": record(**{"update/losses": later})}) == (
        "at the update: pytorch and jax part at step 12 (epoch 2, step 2)"
        " (forward pass, loss, gradients and loop agree)"
    )
    short = record(**{"update/losses": good["update/losses"][:7]})
    where = "step 8 (epoch 1, step 8) (one loop made 20 steps, the other 7)"
    assert parted({"pytorch": good, "jax": short}) == f"at the update: pytorch and jax part at {where}" + (
        " (forward pass, loss, gradients and loop agree)"
    )


def looped(good: dict[str, np.ndarray], **changes: np.ndarray) -> dict[str, np.ndarray]:
    """A record whose loop record has these parts changed."""
    return {**good, **prefixed("loop", {**stages.loop_record(good), **changes})}


def test_the_loop_names_the_first_step_that_another_batch_or_setting_takes() -> None:
    good = record()
    recipe = loop.expected(RUN, 0)
    reused = np.concatenate([batch_order(200, 20, 0, 0).ravel()] * 3).astype(np.int32)  # epoch 0's order each epoch
    records = {"pytorch": good, "tensorflow": good, "jax": looped(good, examples=reused)}
    assert parted(records, recipe) == (
        "at the loop: jax parts from pytorch, tensorflow and the recipe at step 11 (epoch 2, step 1): another batch"
        " (forward pass, loss and gradients agree)"
    )
    lr = good["loop/hyper/lr"].copy()
    lr[10:] = 0.02 * 0.7  # StepLR(step_size=1, gamma=0.7), stepped after the first epoch
    two = {"pytorch": looped(good, **{"hyper/lr": lr}), "jax": good}
    table_ = stages.compare(two, "sgd", recipe)
    assert stages.first_parting(table_).startswith(
        "at the loop: pytorch parts from jax and the recipe at step 11 (epoch 2, step 1):"
        " another learning rate (0.014 against 0.02)"
    )
    assert table_[STAGE_INDEX["loop"]]["pairs"]["pytorch vs jax"]["value"] == 20  # every step of epochs 2 and 3
    columns, rows = table.stages_table(table_)
    assert columns[-2:] == ("against the recipe", "tolerance")
    assert rows[STAGE_INDEX["loop"]][-2:] == [
        "pytorch PARTS at step 11 (epoch 2, step 1): another learning rate (0.014 against 0.02)",
        "exact",
    ]


def test_the_loop_names_steps_missing_and_epochs_cut_elsewhere() -> None:
    good = record()
    recipe = loop.expected(RUN, 0)

    def cut(epoch_steps: list[int]) -> dict[str, np.ndarray]:
        """One step fewer in all, the epochs as given."""
        steps = {k: good[f"loop/{k}"][:-1] for k in ("batch_sizes", "hyper/lr", "hyper/momentum")}
        return looped(good, examples=good["loop/examples"][:-20], epoch_steps=np.asarray(epoch_steps), **steps)

    short = cut([9, 10, 10])
    assert parted({"pytorch": good, "jax": short}, recipe).startswith(
        "at the loop: jax parts from pytorch and the recipe at step 10 (epoch 2, step 1):"
        " another epoch boundary (epoch 2, step 1 against epoch 1, step 10)"
    )
    assert loop.items(stages.loop_record(good), stages.loop_record(cut([10, 10, 9]))) == [
        ("step 30 (epoch 3, step 10): one loop made 30 steps, the other 29", 1.0)
    ]


def test_loops_that_agree_with_each_other_but_not_the_recipe_part_from_it() -> None:
    """Pairwise they agree; the recipe still names both."""
    good = record()
    lr = good["loop/hyper/lr"] * np.float32(0.5)
    wrong = looped(good, **{"hyper/lr": lr})
    result = stages.compare({"pytorch": wrong, "jax": wrong}, "sgd", loop.expected(RUN, 0))
    assert all(p["passed"] for p in result[STAGE_INDEX["loop"]]["pairs"].values())
    assert not result[STAGE_INDEX["loop"]]["passed"]
    assert stages.first_parting(result).startswith(
        "at the loop: pytorch and jax part from the recipe at step 1 (epoch 1, step 1): another learning rate"
    )


def test_adams_update_stage_has_its_own_tolerance() -> None:
    """One weight apart by 4.5e-12 of its tensor's max, as measured with Adam on correct code (seed 16): a
    disagreement under SGD, whose update has no lr/eps amplification, and agreement under Adam; 1e-9 (a
    float32 constant's size) parts under both."""
    good = record()
    weights = good["update/fc.weight"]

    def nudged(by: float) -> dict[str, np.ndarray]:
        moved = weights.copy()
        moved[0, 854] += by * np.abs(weights).max()
        return record(**{"update/fc.weight": moved})

    records = {"pytorch": good, "tensorflow": good, "jax": nudged(4.5e-12)}
    assert parted(records) == (
        "at the update: jax parts from pytorch and tensorflow at fc.weight after the steps"
        " (forward pass, loss, gradients and loop agree)"
    )
    adam = stages.compare(records, "adam")
    assert all(s["passed"] for s in adam) and adam[STAGE_INDEX["update"]]["tolerance"] == stages.ADAM_UPDATE == 1e-10
    float32_constant = stages.compare({**records, "jax": nudged(1e-9)}, "adam")
    assert stages.first_parting(float32_constant).startswith("at the update: jax parts from pytorch and tensorflow")


def test_evaluation_parts_on_shape_or_accuracy() -> None:
    good = record()
    fewer = record(**{"evaluation/logits": good["evaluation/logits"][:400]})
    pair = stages.compare_pair("evaluation", good, fewer, stages.TOLERANCE["evaluation"])
    assert pair["where"] == "logits" and pair["value"] == float("inf")
    other = stages.compare_pair(
        "evaluation", good, record(**{"evaluation/accuracy": np.asarray(0.752)}), stages.TOLERANCE["evaluation"]
    )
    assert other["where"] == "accuracy (points)" and other["value"] == pytest.approx(0.2)


def test_without_a_majority_nobody_is_blamed() -> None:
    """Three frameworks all apart, or only one pair apart: no odd one out, so the frameworks that part are named."""
    good = record()
    a = record(**{"loss": np.asarray(2.31)})
    b = record(**{"loss": np.asarray(2.32)})
    text = parted({"pytorch": good, "tensorflow": a, "jax": b})
    assert text == "at the loss: pytorch, tensorflow and jax part at loss (forward pass agrees)"
    c = record(**{"loss": np.asarray(2.3 + 1e-12)})  # within 1e-12 of both, while they are 2e-12 apart
    d = record(**{"loss": np.asarray(2.3 + 2.4e-12)})
    assert (
        parted({"pytorch": good, "tensorflow": c, "jax": d})
        == "at the loss: pytorch and jax part at loss (forward pass agrees)"
    )


def test_the_verdict_and_its_table_read_the_stages(tmp_path) -> None:
    good = record()
    bad = record(**{"update/fc.weight": good["update/fc.weight"] + 1e-6})
    (tmp_path / "stages").mkdir()
    for name, arrays in (("pytorch", good), ("tensorflow", good), ("jax", bad)):
        np.savez(tmp_path / "stages" / f"{name}.npz", **arrays)
    runs = [{"framework": f, "status": "ok"} for f in ("pytorch", "tensorflow", "jax")]
    tab = parity.stage_table(tmp_path, runs, "sgd")
    result = parity.with_stages(parity.verdict(parity.stage_checks(tab), runs), tab)
    assert parity.headline(result) == (
        "DISAGREE at the update: jax parts from pytorch and tensorflow at fc.weight after the steps"
        " (forward pass, loss, gradients and loop agree)"
    )
    columns, rows = table.stages_table(result["stages"])
    assert columns == ("stage", "pytorch vs tensorflow", "pytorch vs jax", "tensorflow vs jax", "tolerance")
    update = rows[stages.STAGES.index("update")]
    assert update[1] == "0" and update[2].startswith("PARTS at fc.weight after the steps (")


def test_kerass_retracing_notice_for_the_stage_models_stays_in_the_log() -> None:
    """Each stage builds its own Keras model, so tf.function traces forward again: expected, not shown."""
    from common.run.launch import NOISE

    notice = (
        b"WARNING:tensorflow:5 out of the last 7 calls to <function forward at 0x7fb1599198a0> triggered"
        b" tf.function retracing. Tracing is expensive and the excessive number of tracings could be due to"
    )
    assert NOISE.match(notice)
    assert not NOISE.match(b"WARNING:tensorflow:Gradients do not exist for variables")
