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

from common.config import RunConfig
from common.weights import CANONICAL_SHAPES

# float32, same weights, same batches, strict profile (full fp32 on GPUs).
STRICT32 = {"logits": 1e-5, "first_loss": 1e-6, "grads": 1e-4, "accuracy_points": 0.5, "test_loss": 0.03}
# --fast on a GPU lets TF32 (10-bit mantissa) into convolutions and matmuls.
FAST = {"logits": 1e-2, "first_loss": 1e-3, "grads": 1e-2, "accuracy_points": 0.5, "test_loss": 0.03}
# --init native: different starting points, so only the outcome can agree.
NATIVE = {"accuracy_points": 1.0, "test_loss": 0.05}
FLOAT64_STEPS = 100
FLOAT64_STEP_LOSS = 1e-9
EVAL_LOGITS = 1e-4
PLANE_PARAMS = 1e-4
PLANE_GAP = 0.01


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


def verdict(checks: list[dict[str, Any]], note: str = "") -> dict[str, Any]:
    return {"passed": all(c["passed"] for c in checks), "checks": checks, "note": note}


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
        checks.append(check("a, b at every iteration: max abs difference", value, PLANE_PARAMS, pair))
    return verdict(checks)


def mnist_parity(cfg: RunConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    if len(ok) < 2:
        return verdict([], note="fewer than two frameworks finished: nothing to compare")
    if cfg.mnist.eval_params:
        return verdict(eval_checks(cfg.out_dir, ok), note="one checkpoint scored by every framework")
    if cfg.mnist.init == "native":
        note = (
            "--init native: each framework starts from its own initialisers, so only statistical agreement is checked"
        )
        return verdict(outcome_checks(ok, NATIVE), note=note)
    tol = FAST if cfg.profile == "fast" else STRICT32
    checks = probe_checks(cfg.out_dir, ok, tol) + outcome_checks(ok, tol)
    if cfg.mnist.dtype == "float64":
        n = min(FLOAT64_STEPS, *(len(r["step_losses"]) for r in ok))
        value, pair = worst_pair(ok, lambda r, s: np.abs(np.subtract(r["step_losses"][:n], s["step_losses"][:n])).max())
        checks.append(check(f"first {n} step losses (float64): max abs difference", value, FLOAT64_STEP_LOSS, pair))
    return verdict(checks, note=f"shared initial weights, {cfg.mnist.dtype}, {cfg.profile} profile")


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


def probe_checks(out_dir: Path, ok: list[dict[str, Any]], tol: dict[str, float]) -> list[dict[str, Any]]:
    """Initial logits, first-step loss and first-step gradients, from probes/<fw>.npz."""
    probes = {r["framework"]: load_arrays(out_dir, "probes", r["framework"]) for r in ok}

    def logits(r: dict, s: dict) -> float:
        return np.abs(probes[r["framework"]]["logits"] - probes[s["framework"]]["logits"]).max()

    def first_loss(r: dict, s: dict) -> float:
        a, b = float(probes[r["framework"]]["loss"]), float(probes[s["framework"]]["loss"])
        return abs(a - b) / abs(a)

    def grads(r: dict, s: dict) -> float:
        """Per tensor: max |difference| / max |gradient|; the worst tensor."""
        return max(
            relative_to_max(probes[r["framework"]][f"grad/{k}"], probes[s["framework"]][f"grad/{k}"])
            for k in CANONICAL_SHAPES
        )

    checks = []
    for name, fn, key in (
        ("initial logits on the first batch: max abs difference", logits, "logits"),
        ("first-step loss: relative difference", first_loss, "first_loss"),
        ("first-step gradients: max abs difference / tensor max", grads, "grads"),
    ):
        value, pair = worst_pair(ok, fn)
        checks.append(check(name, value, tol[key], pair))
    return checks


def relative_to_max(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.abs(a).max(), np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else 0.0


def eval_checks(out_dir: Path, ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """--eval-params: one checkpoint, so identical accuracy and logits within 1e-4."""
    logits = {r["framework"]: load_arrays(out_dir, "logits", r["framework"])["logits"] for r in ok}
    acc, acc_pair = worst_pair(ok, lambda r, s: 100 * abs(r["test_accuracy"] - s["test_accuracy"]))
    diff, diff_pair = worst_pair(ok, lambda r, s: np.abs(logits[r["framework"]] - logits[s["framework"]]).max())
    return [
        check("test accuracy: max pairwise difference (points)", acc, 0.0, acc_pair),
        check("test logits: max abs difference", diff, EVAL_LOGITS, diff_pair),
    ]
