"""Statistics of repeated runs: means with intervals, paired differences and equivalence (TOST).

Every distribution comes from SciPy (`ttest_1samp`, `ttest_rel`, `ttest_ind(equal_var=False)`,
their `confidence_interval`, and `scipy.stats.t`); this module only decides which test answers
which question. Numbers go in as plain sequences in the unit they are reported in (accuracy in
points), and come out as JSON-ready dicts: None where too few seeds leave nothing to estimate.

The equivalence rule, per pair of frameworks and metric, on the same-seed differences d:

- **equivalent**: the 90% paired-t interval of mean(d) lies strictly inside (-margin, +margin).
  This is TOST, two one-sided t-tests at alpha 0.05: both one-sided p-values are below 0.05
  exactly when that interval is inside the margin (`p_tost` records the larger of the two).
- **different**: the 95% paired-t interval excludes 0 (two-sided p < 0.05) *and* |mean(d)|
  is at least the margin: the frameworks differ, and by more than the margin allows.
- **undetermined**: neither. `seeds_needed` then says at how many seeds the observed mean and
  spread would decide it: equivalence when |mean| < margin, a difference otherwise.

A real but small difference (interval excluding 0, inside the margin) is "equivalent": the
margin states what difference does not matter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

MEAN_CONFIDENCE = 0.95  # intervals of means and of a framework against the others
TOST_CONFIDENCE = 0.90  # two one-sided tests at 0.05 each
MAX_SEEDS = 100
EQUIVALENT, DIFFERENT, UNDETERMINED = "equivalent", "different", "undetermined"


def interval(lo: float, hi: float) -> list[float]:
    return [float(lo), float(hi)]


def no_spread(values: np.ndarray) -> bool:
    """True when the values are equal up to rounding: a t statistic would be 0/0 or noise/0.

    Same-seed accuracy differences are multiples of 0.01 point, so two seeds can give the same
    difference exactly, and SciPy's moments then warn of catastrophic cancellation.
    """
    scale = float(np.abs(values).max()) if values.size else 0.0
    return values.size > 0 and float(np.ptp(values)) <= 1e-9 * max(scale, 1e-300)


def quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a SciPy test without its precision warnings (degenerate cases are handled here)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def mean_interval(values: np.ndarray, confidence: float) -> list[float]:
    """The t interval of the mean (a point when the values do not vary)."""
    if no_spread(values):
        return interval(values.mean(), values.mean())
    ci = quiet(sps.ttest_1samp, values, 0.0).confidence_interval(confidence)
    return interval(ci.low, ci.high)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, standard deviation (n - 1) and the 95% interval of the mean."""
    x = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {"n": int(x.size), "mean": float(x.mean()) if x.size else None, "std": None, "ci95": None}
    if x.size >= 2:
        out["std"] = float(x.std(ddof=1))
        out["ci95"] = mean_interval(x, MEAN_CONFIDENCE)
    return out


def compare_pair(a: Sequence[float], b: Sequence[float], margin: float) -> dict[str, Any]:
    """a - b on the same seeds: paired and Welch intervals, the TOST verdict (module docstring)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = x - y
    n = int(d.size)
    out: dict[str, Any] = {
        "n": n,
        "mean": float(d.mean()) if n else None,
        "std": None,
        "ci90": None,
        "ci95": None,
        "welch_ci90": None,
        "p_two_sided": None,
        "p_tost": None,
        "margin": float(margin),
        "verdict": UNDETERMINED,
        "seeds_needed": None,
    }
    if n < 2:
        return out
    mean, std = float(d.mean()), float(d.std(ddof=1))
    out["std"] = std
    if no_spread(d):
        out.update(degenerate(mean, margin))
    else:
        paired = quiet(sps.ttest_rel, x, y)
        out["ci90"] = interval(*paired.confidence_interval(TOST_CONFIDENCE))
        out["ci95"] = interval(*paired.confidence_interval(MEAN_CONFIDENCE))
        out["p_two_sided"] = float(paired.pvalue)
        lower = quiet(sps.ttest_1samp, d, -margin, alternative="greater").pvalue
        upper = quiet(sps.ttest_1samp, d, margin, alternative="less").pvalue
        out["p_tost"] = float(max(lower, upper))
    out["welch_ci90"] = welch_interval(x, y)
    out["verdict"] = decide(mean, out["ci90"], out["ci95"], margin)
    if out["verdict"] == UNDETERMINED:
        out["seeds_needed"] = seeds_needed(mean, std, margin)
    return out


def degenerate(mean: float, margin: float) -> dict[str, Any]:
    """Every seed gave the same difference: the intervals shrink to that point."""
    return {
        "ci90": interval(mean, mean),
        "ci95": interval(mean, mean),
        "p_two_sided": 1.0 if mean == 0 else 0.0,
        "p_tost": 0.0 if abs(mean) < margin else 1.0,
    }


def welch_interval(x: np.ndarray, y: np.ndarray) -> list[float] | None:
    """The unpaired (Welch) 90% interval of mean(x) - mean(y): what ignoring the pairing gives."""
    if no_spread(x) and no_spread(y):
        return interval(x.mean() - y.mean(), x.mean() - y.mean())
    ci = quiet(sps.ttest_ind, x, y, equal_var=False).confidence_interval(TOST_CONFIDENCE)
    return interval(ci.low, ci.high) if math.isfinite(ci.low) and math.isfinite(ci.high) else None


def decide(mean: float, ci90: list[float], ci95: list[float], margin: float) -> str:
    """The rule in the module docstring."""
    if -margin < ci90[0] and ci90[1] < margin:
        return EQUIVALENT
    if (ci95[0] > 0 or ci95[1] < 0) and abs(mean) >= margin:
        return DIFFERENT
    return UNDETERMINED


def seeds_needed(mean: float, std: float, margin: float, limit: int = MAX_SEEDS) -> int | None:
    """Seeds at which this mean and spread would settle the verdict; None: more than `limit`.

    Below the margin: the smallest n with t(0.95, n-1) * std / sqrt(n) < margin - |mean| (the
    90% interval fits inside the margin). At or beyond it: the smallest n with
    t(0.975, n-1) * std / sqrt(n) < |mean| (the 95% interval excludes 0). A planning figure:
    it takes the observed mean and spread as the truth.
    """
    if abs(mean) < margin:
        quantile, room = 1 - (1 - TOST_CONFIDENCE) / 2, margin - abs(mean)
    else:
        quantile, room = 1 - (1 - MEAN_CONFIDENCE) / 2, abs(mean)
    n = np.arange(2, limit + 1)
    half_width = sps.t.ppf(quantile, n - 1) * std / np.sqrt(n)
    enough = np.flatnonzero(half_width < room)
    return int(n[enough[0]]) if enough.size else None


def variation(matrix: Sequence[Sequence[float]]) -> dict[str, Any]:
    """How much the seed moves a number, against how much the framework does on one seed.

    matrix[seed][framework]. between_seeds: the std over seeds of each seed's mean over the
    frameworks; between_frameworks: the pooled std over the frameworks within a seed,
    sqrt(mean over seeds of their variance). Both need two seeds and two frameworks.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        return {"between_seeds": None, "between_frameworks": None, "ratio": None}
    seeds = float(x.mean(axis=1).std(ddof=1))
    frameworks = float(np.sqrt(x.var(axis=1, ddof=1).mean()))
    return {
        "between_seeds": seeds,
        "between_frameworks": frameworks,
        "ratio": seeds / frameworks if frameworks > 0 else None,
    }


def against_others(matrix: Sequence[Sequence[float]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each framework minus the mean of the others on the same seed: is one systematically off?

    'above' or 'below' when the 95% interval of that difference excludes 0, else 'neither';
    with the seed counts, since 'below on 5 of 5 seeds' is what a reader checks first.
    """
    x = np.asarray(matrix, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    if x.ndim != 2 or x.shape[1] < 2:
        return out
    for j, name in enumerate(names):
        d = x[:, j] - np.delete(x, j, axis=1).mean(axis=1)
        entry = summary(d)
        entry["above"], entry["below"] = int((d > 0).sum()), int((d < 0).sum())
        ci = entry["ci95"]
        entry["direction"] = "above" if ci and ci[0] > 0 else "below" if ci and ci[1] < 0 else "neither"
        out[name] = entry
    return out


def reaching(values: Sequence[float], target: float) -> dict[str, Any]:
    """How often, and on average whether, a framework reaches a documented number.

    'reached' when the 95% interval of the mean is at or above the target, 'missed' when it
    is below, else 'unsettled'; `seeds` counts the seeds at or above it.
    """
    entry = summary(values)
    x = np.asarray(values, dtype=np.float64)
    entry["target"] = float(target)
    entry["seeds"] = int((x >= target - 1e-9).sum())
    ci = entry["ci95"]
    entry["verdict"] = "reached" if ci and ci[0] >= target else "missed" if ci and ci[1] < target else "unsettled"
    return entry
