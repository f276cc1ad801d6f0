"""The parity verdict: do the frameworks agree, within stated tolerances?

Each check is one number, compared with one tolerance. Checks between frameworks report
the worst pair, so a single line says how far apart the three are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common import loop, stages
from common.config import RunConfig
from common.parallel import prefixed
from common.stages import relative_to_max  # one measure for the stages and the float32 checks
from common.weights import CANONICAL_SHAPES

# float32, same weights, same batches, strict profile (full fp32 on GPUs). Measured on the
# 2-core CPU: logits 3.7e-7, first-step loss 0, gradients 3.3e-6, accuracy 0.03 points, test
# loss 6.4e-4 (docs/differences.md gives each margin).
STRICT32 = {"logits": 1e-5, "first_loss": 1e-6, "grads": 1e-4, "accuracy_points": 0.5, "test_loss": 0.03}
# --fast on a GPU lets TF32 (10-bit mantissa) into convolutions and matmuls. On a CPU --fast
# changes no numerics, so the strict tolerances stay.
FAST = {"logits": 1e-2, "first_loss": 1e-3, "grads": 1e-2, "accuracy_points": 0.5, "test_loss": 0.03}
# --precision bfloat16 (mixed: bfloat16 compute, float32 weights), same weights and batches: bfloat16 keeps 8 bits
# of mantissa (relative rounding 2^-9), and each framework rounds in different places (docs/mixed-precision.md).
# Measured on the 2-core Xeon, --train-limit 2000 --epochs 1, seeds 0-2: logits 3.1e-3, first-step loss 3.2e-5,
# fc gradients 1.2e-2, accuracy 0.15 points, test loss 1.4e-2 (worst seed; docs/mixed-precision.md).
BFLOAT16 = {"logits": 0.03, "first_loss": 1e-3, "grads": 0.05, "accuracy_points": 0.5, "test_loss": 0.03}
# Each framework's bfloat16 initial logits against its own float32 logits, max abs difference: measured 2.6e-3.
BFLOAT16_VS_FLOAT32 = 0.03
# --init native: different starting points, so only the outcome can agree.
NATIVE = {"accuracy_points": 1.0, "test_loss": 0.05}
FLOAT64_STEPS = 100
# float64 step losses, relative: measured <= 4e-15 over 100 steps; 1e-12 leaves a 250x margin
# and still fails on any real difference (a float32 constant in Keras moved them by 1e-9).
FLOAT64_STEP_LOSS = 1e-12
EVAL_LOGITS = 1e-4
# The float64 plane trajectories: measured 1.1e-16 over 5,000 iterations.
PLANE_PARAMS = 1e-12
PLANE_GAP = 0.01

AGREE, DISAGREE, NOT_COMPARED = "agree", "disagree", "not compared"
# --seeds only (common.verdict.seeds): every check passed, but too few seeds to show equivalence.
UNDETERMINED = "undetermined"


def check(name: str, value: float, tolerance: float, detail: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "value": float(value),
        "tolerance": float(tolerance),
        "passed": bool(value <= tolerance),
        "detail": detail,
    }


def worst_pair(runs: list[dict[str, Any]], distance: Callable[[Any, Any], float]) -> tuple[float, str]:
    """Largest distance between any two runs, with the pair that gave it."""
    worst, pair = 0.0, ""
    for r, s in itertools.combinations(runs, 2):
        d = float(distance(r, s))
        if d >= worst:
            worst, pair = d, f"{r['framework']} vs {s['framework']}"
    return worst, pair


def verdict(checks: list[dict[str, Any]], runs: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    """Agree only when two or more frameworks finished and every check ran and passed.

    `runs` holds one entry per requested framework, finished or not, so the verdict can say
    what was compared and what was not: a run of one framework, or of three of which two
    failed, is never reported as agreement of nothing.
    """
    finished = [r["framework"] for r in runs if r["status"] == "ok"]
    if len(finished) < 2:
        status, reason = NOT_COMPARED, not_compared_reason(runs, finished)
    elif not checks:
        status, reason = NOT_COMPARED, "no parity checks ran"
    else:
        status, reason = (AGREE if all(c["passed"] for c in checks) else DISAGREE), ""
    return {
        "status": status,
        "passed": status == AGREE,
        "compared": finished if len(finished) > 1 else [],
        "left_out": {r["framework"]: r["status"] for r in runs if r["status"] != "ok"},
        "reason": reason,
        "checks": checks,
        "note": note,
    }


def not_compared_reason(runs: list[dict[str, Any]], finished: list[str]) -> str:
    if not finished:
        return "no framework finished"
    if len(runs) == 1:
        return f"only {finished[0]} was requested"
    return f"only {finished[0]} finished"


def status_of(parity: dict[str, Any]) -> str:
    """The verdict's status; results written before it was recorded get it from their checks."""
    if "status" in parity:
        return parity["status"]
    if not parity["checks"]:
        return NOT_COMPARED
    return AGREE if parity["passed"] else DISAGREE


def headline(parity: dict[str, Any]) -> str:
    """'AGREE', 'DISAGREE', 'UNDETERMINED: <why>' or 'NOT COMPARED: <why>', naming frameworks left out.

    A single run's DISAGREE names the first float64 stage where two frameworks part ('DISAGREE at
    the update: ...'), else the check that failed; a multi-seed run's verdict says what decided it.
    """
    status = status_of(parity)
    if status == NOT_COMPARED:
        return f"NOT COMPARED: {parity.get('reason') or 'no parity checks ran'}"
    left_out = parity.get("left_out") or {}
    text = status.upper()
    if left_out:
        gone = ", ".join(f"{name} {why}" for name, why in left_out.items())
        text += f" ({' and '.join(parity['compared'])} only; {gone})"
    reason = parity.get("reason") or ""
    if reason:
        text += f" {reason}" if reason.startswith("at ") else f": {reason}"
    return text


def plane_parity(runs: list[dict[str, Any]], optimum: dict[str, float]) -> dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    checks = [
        check(
            f"{r['framework']}: final loss above optimum (relative)", r["final_loss"] / optimum["loss"] - 1, PLANE_GAP
        )
        for r in ok
    ]
    if len(ok) > 1:
        value, pair = worst_pair(ok, lambda r, s: np.abs(np.subtract(r["trajectory"], s["trajectory"])).max())
        checks.append(check("a, b at every iteration (float64): max abs difference", value, PLANE_PARAMS, pair))
    return across_devices(runs) or verdict(checks, runs)


# --- Frameworks that ran on different devices: not compared ---

# Every tolerance here was measured with the frameworks on one kind of device: the CPUs in README, and PyTorch
# against JAX both on one H200 (docs/performance.md). A GPU's float32 convolutions and sums round in other orders
# than a CPU's, and how far a GPU's and a CPU's training of correct code part has not been measured (no machine
# has run all three frameworks with some on its GPU and some on its CPU). A tolerance guessed for it would pass a
# porting bug or fail correct code, so such a run is refused in one line, naming who ran where. The checks that
# compare a framework with itself (data-parallel against one device) stay: each is on one device.


def across_devices(runs: list[dict[str, Any]], own_checks: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """NOT COMPARED where some finished frameworks ran on a GPU and others on the CPU; None where all used one kind.

    `own_checks` (each framework against itself) still count: a failed one fails the run.
    """
    ok = [r for r in runs if r["status"] == "ok"]
    gpu = [r for r in ok if r.get("device") and r["device"] != "cpu"]
    cpu = [r["framework"] for r in ok if r.get("device") == "cpu"]
    if not gpu or not cpu:
        return None
    where = [f"{r['framework']} {'ran ' if i == 0 else ''}on {r['device']}" for i, r in enumerate(gpu)]
    cpu_names = cpu[0] if len(cpu) == 1 else f"{', '.join(cpu[:-1])} and {cpu[-1]}"
    reason = (
        f"{', '.join(where)}, {cpu_names} on the CPU; no tolerance between a GPU's and a CPU's training has been"
        " measured: run them on one device (--device cpu, or the CUDA builds: make run GPU=1)"
    )
    result = verdict(own_checks or [], runs)
    return {**result, "status": NOT_COMPARED, "passed": False, "compared": [], "reason": reason}


def on_gpu(runs: list[dict[str, Any]]) -> bool:
    return any(r.get("device") and r["device"] != "cpu" for r in runs)


def mnist_parity(cfg: RunConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The float64 stages first (the recipe, exactly), then the float32 checks (how far float32 drifts)."""
    ok = [r for r in runs if r["status"] == "ok"]
    dp = parallel_checks(cfg, ok)  # each framework against itself: they need no second framework
    if len(ok) < 2:
        return verdict(dp, runs)
    split = across_devices(runs, dp)
    if split:
        return split
    if cfg.mnist.eval_params:
        return verdict(eval_checks(cfg.out_dir, ok), runs, note="one checkpoint scored by every framework")
    table = stage_table(cfg.out_dir, ok, cfg.mnist.optimizer, loop.expected(cfg.mnist, cfg.seed))
    staged = stage_checks(table)
    if cfg.mnist.init == "native":
        note = (
            "--init native: each framework starts from its own initialisers, so only statistical agreement is checked"
            " after training; the float64 stages start from the shared weights"
        )
        return with_stages(verdict(staged + dp + outcome_checks(ok, NATIVE), runs, note=note), table)
    # --fast changes numerics only on a GPU (TF32, non-deterministic kernels).
    loose = cfg.profile == "fast" and on_gpu(ok)
    mixed = cfg.mnist.precision != "float32"
    tol = BFLOAT16 if mixed else FAST if loose else STRICT32
    # float64 first (the stages, then each engine against one device), then float32: the verdict names
    # the first check that failed.
    checks = staged + dp + probe_checks(cfg.out_dir, ok, tol)
    if mixed:
        checks += against_float32(cfg.out_dir, ok, cfg.mnist.precision)
    checks += outcome_checks(ok, tol)
    drift = float32_gradients(cfg.out_dir, ok)
    if cfg.mnist.dtype == "float64":
        n = min(FLOAT64_STEPS, *(len(r["step_losses"]) for r in ok))
        value, pair = worst_pair(ok, lambda r, s: relative_difference(r["step_losses"][:n], s["step_losses"][:n]))
        checks.append(
            check(f"first {n} step losses (float64): max relative difference", value, FLOAT64_STEP_LOSS, pair)
        )
    note = f"float64 stages, then shared initial weights in {cfg.mnist.dtype}, {profile_note(cfg, loose)}"
    if mixed:
        note += f", {cfg.mnist.precision} mixed precision (its own tolerances)"
    result = with_stages(verdict(checks, runs, note=note + parallel_note(cfg)), table)
    return {**result, "float32_gradients": drift}


# --- The float64 stages (common.stages): where two frameworks first part ---

UPDATE_STEPS = f"{stages.EPOCHS} epochs of {stages.STEPS} steps"
STAGE_CHECKS = {
    "forward": "float64 forward pass: every layer's output, max abs difference / layer max",
    "loss": "float64 loss on the first batch: relative difference",
    "gradients": "float64 gradients: max abs difference / tensor max",
    "loop": "the loop at every step of the run: batch, hyperparameters, epochs; steps that differ",
    "update": f"float64 update, {UPDATE_STEPS} of each training loop: step losses and weights, relative",
    "evaluation": f"float64 evaluation, predict on {stages.EVAL_IMAGES} test images: logits / tensor max",
}


def stage_table(
    out_dir: Path, ok: list[dict[str, Any]], optimizer: str, recipe: dict[str, np.ndarray] | None = None
) -> list[dict[str, Any]]:
    """Each stage for each pair, from stages/<framework>.npz and the loops' records (loops/<framework>.npz, where
    every framework trained), the loops also against `recipe` (common.loop.expected); [] when a run recorded none."""
    names = [r["framework"] for r in ok]
    if not all((out_dir / "stages" / f"{name}.npz").is_file() for name in names):
        return []
    records = {name: load_arrays(out_dir, "stages", name) for name in names}
    if all((out_dir / "loops" / f"{name}.npz").is_file() for name in names):
        records = {name: records[name] | prefixed("loop", load_arrays(out_dir, "loops", name)) for name in names}
    return stages.compare(records, optimizer, recipe)


def stage_checks(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One check per stage: its worst pair (or a loop against the recipe), and where it parts (or differs most)."""
    checks = []
    for stage in table:
        against = {f"{name} vs {loop.RECIPE}": found for name, found in (stage.get("recipe") or {}).items()}
        candidates = {**stage["pairs"], **{pair: {**found, "passed": False} for pair, found in against.items()}}
        pair, worst = max(candidates.items(), key=lambda item: (not item[1]["passed"], item[1]["value"]))
        detail = f"{pair} at {worst['where']}"
        checks.append(check(STAGE_CHECKS[stage["stage"]], worst["value"], stage["tolerance"], detail))
    return checks


def with_stages(result: dict[str, Any], table: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict with its stages; a disagreement says where: the first stage that parts, else the float32 checks."""
    result["stages"] = table
    if result["status"] == DISAGREE:
        failed = next(c for c in result["checks"] if not c["passed"])
        agree = "; the float64 stages agree" if table else ""
        result["reason"] = stages.first_parting(table) or f"{failed['name']} ({failed['detail']}){agree}"
    return result


def profile_note(cfg: RunConfig, loose: bool) -> str:
    if loose:
        return "fast profile (loose float32 tolerances)"
    if cfg.profile == "fast":
        return "--fast changes nothing on a CPU: strict tolerances"
    return "strict profile"


def relative_difference(a: list[float], b: list[float]) -> float:
    """max |a - b| / |a| over matching entries (losses are positive)."""
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a_ - b_) / np.abs(a_)))


def outcome_checks(ok: list[dict[str, Any]], tol: dict[str, float]) -> list[dict[str, Any]]:
    acc, acc_pair = worst_pair(ok, lambda r, s: 100 * abs(r["test_accuracy"] - s["test_accuracy"]))
    loss, loss_pair = worst_pair(ok, lambda r, s: abs(r["test_loss"] - s["test_loss"]))
    return [
        check("test accuracy: max pairwise difference (points)", acc, tol["accuracy_points"], acc_pair),
        check("test loss: max pairwise difference", loss, tol["test_loss"], loss_pair),
    ]


def load_arrays(out_dir: Path, folder: str, framework: str) -> dict[str, np.ndarray]:
    with np.load(out_dir / folder / f"{framework}.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# float32 gradients are judged above every ReLU and max-pool only (fc). Below them, a max-pool window
# whose two largest entries lie closer than float32 rounding routes a whole patch's gradient to either
# entry, whichever the framework's last bit favours, and a ReLU at zero passes or drops it: conv1.weight's
# float32 gradients of correct code then part by 2.5e-3 (seed 1) and 1.2e-2 (seed 3) at --train-limit
# 5000 (docs/differences.md, section 15). Every tensor is judged exactly by the float64 gradients stage;
# the float32 differences of all tensors are kept in results.json (parity.float32_gradients).
FLIP_FREE = ("fc.weight", "fc.bias")


def float32_gradients(out_dir: Path, ok: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every tensor's float32 first-step gradient difference per pair: float32 drift, measured and not judged."""
    probes = {r["framework"]: load_arrays(out_dir, "probes", r["framework"]) for r in ok}
    return {
        f"{a} vs {b}": {k: relative_to_max(probes[a][f"grad/{k}"], probes[b][f"grad/{k}"]) for k in CANONICAL_SHAPES}
        for a, b in itertools.combinations(probes, 2)
    }


def probe_checks(out_dir: Path, ok: list[dict[str, Any]], tol: dict[str, float]) -> list[dict[str, Any]]:
    """Initial logits, first-step loss and first-step gradients, from probes/<fw>.npz."""
    probes = {r["framework"]: load_arrays(out_dir, "probes", r["framework"]) for r in ok}

    def logits(r: dict, s: dict) -> float:
        return np.abs(probes[r["framework"]]["logits"] - probes[s["framework"]]["logits"]).max()

    def first_loss(r: dict, s: dict) -> float:
        a, b = float(probes[r["framework"]]["loss"]), float(probes[s["framework"]]["loss"])
        return abs(a - b) / abs(a)

    def grads(r: dict, s: dict) -> float:
        """Per tensor: max |difference| / max |gradient|; the worst tensor above every ReLU and max-pool."""
        return max(
            relative_to_max(probes[r["framework"]][f"grad/{k}"], probes[s["framework"]][f"grad/{k}"]) for k in FLIP_FREE
        )

    checks = []
    for name, fn, key in (
        ("initial logits on the first batch: max abs difference", logits, "logits"),
        ("first-step loss: relative difference", first_loss, "first_loss"),
        ("first-step gradients of fc: max abs difference / tensor max", grads, "grads"),
    ):
        value, pair = worst_pair(ok, fn)
        checks.append(check(name, value, tol[key], pair))
    return checks


def against_float32(out_dir: Path, ok: list[dict[str, Any]], precision: str) -> list[dict[str, Any]]:
    """Each framework's mixed-precision initial logits against its own float32 logits (probes/<fw>-float32.npz)."""
    checks = []
    for r in ok:
        name = r["framework"]
        reference = optional_arrays(out_dir, "probes", f"{name}-float32")  # missing: the check fails
        mixed = load_arrays(out_dir, "probes", name)["logits"]
        value = np.abs(mixed - reference["logits"]).max() if "logits" in reference else float("inf")
        label = f"{name}: initial logits, {precision} against float32: max abs difference"
        checks.append(check(label, value, BFLOAT16_VS_FLOAT32, name))
    return checks


def eval_checks(out_dir: Path, ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """--eval-params: one checkpoint, so identical accuracy and logits within 1e-4."""
    logits = {r["framework"]: load_arrays(out_dir, "logits", r["framework"])["logits"] for r in ok}
    acc, acc_pair = worst_pair(ok, lambda r, s: 100 * abs(r["test_accuracy"] - s["test_accuracy"]))
    diff, diff_pair = worst_pair(ok, lambda r, s: np.abs(logits[r["framework"]] - logits[s["framework"]]).max())
    return [
        check("test accuracy: max pairwise difference (points)", acc, 0.0, acc_pair),
        check("test logits: max abs difference", diff, EVAL_LOGITS, diff_pair),
    ]


# --- Data-parallel against one device (--devices N): each framework against itself ---

# float64, from the shared start on the run's first batches: the engine must compute the
# single-device update; splitting the batch only reorders sums (measured: docs/distributed.md).
PARALLEL_FLOAT64 = 1e-12
# float32 first-step gradients of fc, max |difference| / tensor max: the profile's float32 gradient
# tolerance (1e-4 strict), judged above every ReLU and max-pool only, as between frameworks (FLIP_FREE).
# The single-device and the data-parallel gradients are two float32 roundings of one float64
# gradient: about 4e-7 for fc, and up to 1.2e-5 for the convolutions' tensors at batch 1000
# (test_distributed.py::test_float32_split_rounding_is_near_1e_5_at_batch_1000). A real data-parallel
# fault (a factor N, a replica's wrong rows) moves fc by 1e-2 or more, and the float64 update stage
# checks every tensor after STEPS steps at 1e-12.


def parallel_note(cfg: RunConfig) -> str:
    par = cfg.parallel
    if not par.enabled:
        return ""
    form = f"{par.processes} processes" if par.processes else "one machine"
    return f"; data-parallel on {par.devices} devices ({form}), each framework also checked against one device"


def parallel_checks(cfg: RunConfig, ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per framework: the engine's update stage and first-step gradients against its own single device.

    The engine's side is probes/<framework>-parallel.npz; the single device's is the run's own
    float64 update stage (stages/<framework>.npz) and first-step probe (probes/<framework>.npz).
    """
    if not cfg.parallel.enabled:
        return []
    grads = (FAST if cfg.profile == "fast" and on_gpu(ok) else STRICT32)["grads"]
    checks = []
    for r in ok:
        name = r["framework"]
        engine = optional_arrays(cfg.out_dir, "probes", f"{name}-parallel")
        single = optional_arrays(cfg.out_dir, "stages", name)
        probe = optional_arrays(cfg.out_dir, "probes", name)
        steps = stages.EPOCHS * stages.STEPS
        for label, (where, value), tolerance in (
            (
                f"the update stage's {steps} step losses (float64): relative difference",
                losses_apart(single.get("update/losses"), engine.get("parallel/losses"), PARALLEL_FLOAT64),
                PARALLEL_FLOAT64,
            ),
            (
                f"weights after the update stage's {steps} steps (float64): max abs difference / tensor max",
                tensors_apart(single, "update/", engine, "parallel/params/"),
                stages.tolerance("update", cfg.mnist.optimizer),  # Adam's own (stages.ADAM_UPDATE says why)
            ),
            (
                f"first-step gradients of fc ({cfg.mnist.dtype}): max abs difference / tensor max",
                tensors_apart(probe, "grad/", engine, "parallel/grads/", FLIP_FREE),
                grads,
            ),
        ):
            detail = f"parts at {where} by {value:.2g}" if not value <= tolerance else f"largest at {where}"
            checks.append(check(f"{name}: {cfg.parallel.devices} devices vs one, {label}", value, tolerance, detail))
    return checks


def optional_arrays(out_dir: Path, folder: str, name: str) -> dict[str, np.ndarray]:
    """The arrays a worker saved, or none: a missing file makes its checks fail, never pass on nothing."""
    path = out_dir / folder / f"{name}.npz"
    return load_arrays(out_dir, folder, name) if path.is_file() else {}


def losses_apart(single: np.ndarray | None, engine: np.ndarray | None, limit: float) -> tuple[str, float]:
    """Where the engine's step losses first part from one device's (stages.step_name), else where they differ most."""
    if single is None or engine is None:
        return "no step losses recorded", float("inf")  # never recorded: the check fails rather than pass on nothing
    found = stages.first_apart(stages.losses_apart(single, engine), limit)
    return found["where"], found["value"]


def tensors_apart(
    a: dict[str, np.ndarray], a_prefix: str, b: dict[str, np.ndarray], b_prefix: str, keys: tuple[str, ...] = ()
) -> tuple[str, float]:
    """The tensor that differs most (max abs difference / tensor max), and by how much."""
    keys = keys or tuple(CANONICAL_SHAPES)
    missing = [k for k in keys if a_prefix + k not in a or b_prefix + k not in b]
    if missing:
        return f"{missing[0]}, not recorded", float("inf")
    return max(((k, relative_to_max(a[a_prefix + k], b[b_prefix + k])) for k in keys), key=lambda item: item[1])
