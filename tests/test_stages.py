"""common/stages.py without a framework: the stage data, the comparison and the verdict's words."""

from __future__ import annotations

import numpy as np
import pytest

from common import stages, table
from common.data import Mnist, batch_order
from common.parallel import first_batches
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


def record(seed: int = 0, **changes: object) -> dict[str, np.ndarray]:
    """A synthetic stage record with the keys a worker writes."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {f"layer/{name}": rng.normal(size=(4, 3)) for name in stages.LAYERS}
    out["loss"] = np.asarray(2.3)
    for name, shape in CANONICAL_SHAPES.items():
        out[f"grad/{name}"] = rng.normal(size=shape)
        out[f"update/{name}"] = rng.normal(size=shape)
    out["update/losses"] = np.linspace(2.3, 1.5, stages.STEPS)
    out["evaluation/logits"] = rng.normal(size=(stages.EVAL_IMAGES, 10))
    out["evaluation/accuracy"] = np.asarray(0.75)
    return {**out, **changes}


STAGE_INDEX = {stage: i for i, stage in enumerate(stages.STAGES)}


def parted(records: dict[str, dict[str, np.ndarray]]) -> str:
    return stages.first_parting(stages.compare(records, "sgd"))


def test_identical_records_agree_everywhere() -> None:
    result = stages.compare({"pytorch": record(), "tensorflow": record(), "jax": record()}, "sgd")
    assert [s["stage"] for s in result] == list(stages.STAGES)
    assert all(s["passed"] for s in result) and stages.first_parting(result) == ""


def test_the_first_stage_and_layer_that_part_are_named_with_the_odd_one_out() -> None:
    good = record()
    bad = record(**{"layer/pool1": good["layer/pool1"] + 1e-9, "layer/fc": good["layer/fc"] + 1.0})
    text = parted({"pytorch": good, "tensorflow": good, "jax": bad})
    assert text == "at the forward pass: jax parts from pytorch and tensorflow at pool1"


def test_gradients_are_named_from_the_loss_down() -> None:
    good = record()
    bad = record(**{"grad/conv1.weight": good["grad/conv1.weight"] * 2, "grad/fc.bias": good["grad/fc.bias"] * 2})
    text = parted({"pytorch": bad, "tensorflow": good})
    assert text == "at the gradients: tensorflow parts from pytorch at fc.bias (forward pass and loss agree)"


def test_an_update_parts_at_its_first_step_and_a_short_loop_at_its_missing_step() -> None:
    good = record()
    later = good["update/losses"].copy()
    later[4] += 1e-6
    assert parted({"pytorch": good, "jax": record(**{"update/losses": later})}).startswith(
        "at the update: jax parts from pytorch at step 5 (forward pass, loss and gradients agree)"
    )
    short = record(**{"update/losses": good["update/losses"][:7]})
    where = "step 8 (one loop made 10 steps, the other 7)"
    assert parted({"pytorch": good, "jax": short}) == f"at the update: jax parts from pytorch at {where}" + (
        " (forward pass, loss and gradients agree)"
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
        " (forward pass, loss and gradients agree)"
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


def test_without_a_majority_the_first_parting_pair_is_named() -> None:
    """Three frameworks all apart: no odd one out, so the first pair that parts."""
    good = record()
    a = record(**{"loss": np.asarray(2.31)})
    b = record(**{"loss": np.asarray(2.32)})
    text = parted({"pytorch": good, "tensorflow": a, "jax": b})
    assert text == "at the loss: tensorflow parts from pytorch at loss (forward pass agrees)"


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
        " (forward pass, loss and gradients agree)"
    )
    columns, rows = table.stages_table(result["stages"])
    assert columns == ("float64 stage", "pytorch vs tensorflow", "pytorch vs jax", "tensorflow vs jax", "tolerance")
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
