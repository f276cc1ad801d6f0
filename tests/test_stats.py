"""common.verdict.stats on synthetic numbers whose answers are known: no training, well under a second."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from common.verdict import stats

MARGIN = 0.25  # points, the default


def paired_runs(n: int, shift: float, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two frameworks on n seeds: a shared seed effect (std 0.1 point) plus each one's own noise."""
    rng = np.random.default_rng(seed)
    base = 98.9 + rng.normal(0.0, 0.1, n)
    return base + rng.normal(0.0, noise, n), base - shift + rng.normal(0.0, noise, n)


def test_textbook_interval() -> None:
    """d = 1, 2, 3: mean 2, std 1, 90% interval 2 ± t(0.95, 2) / sqrt(3) = 2 ± 1.685854."""
    pair = stats.compare_pair([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], margin=5.0)
    assert pair["mean"] == pytest.approx(2.0) and pair["std"] == pytest.approx(1.0)
    assert pair["ci90"] == pytest.approx([2 - 1.685854, 2 + 1.685854], abs=1e-6)
    assert pair["ci95"] == pytest.approx([2 - 2.484138, 2 + 2.484138], abs=1e-6)  # t(0.975, 2) = 4.302653
    assert pair["verdict"] == "equivalent"  # the 90% interval 0.31..3.69 lies inside ±5


def test_equal_means_with_many_seeds_are_equivalent() -> None:
    a, b = paired_runs(60, shift=0.0, noise=0.03)
    pair = stats.compare_pair(a, b, MARGIN)
    assert pair["verdict"] == "equivalent"
    assert pair["ci90"][0] < 0 < pair["ci90"][1]
    assert pair["ci90"][0] > -MARGIN and pair["ci90"][1] < MARGIN
    assert pair["p_tost"] < 0.05
    assert pair["seeds_needed"] is None


def test_a_small_real_difference_inside_the_margin_is_equivalent() -> None:
    """0.05 point, every seed: real (the 95% interval excludes 0) but smaller than the margin."""
    a, b = paired_runs(10, shift=0.05, noise=0.01)
    pair = stats.compare_pair(a, b, MARGIN)
    assert pair["ci95"][0] > 0
    assert pair["verdict"] == "equivalent"


def test_shifted_means_are_different() -> None:
    """A port that loses 0.4 point on every seed: five seeds say so."""
    a, b = paired_runs(5, shift=0.4, noise=0.03)
    pair = stats.compare_pair(a, b, MARGIN)
    assert pair["verdict"] == "different"
    assert pair["mean"] == pytest.approx(0.4, abs=0.05)
    assert pair["ci95"][0] > 0 and pair["p_two_sided"] < 0.05
    assert pair["p_tost"] > 0.05


def test_few_noisy_seeds_are_undetermined_and_say_how_many_would_settle_it() -> None:
    """d = 0.2, -0.15, 0.1: mean 0.05, std 0.18028; t(0.95, n-1) * std / sqrt(n) < 0.2 first at n = 5."""
    d = np.array([0.2, -0.15, 0.1])
    pair = stats.compare_pair(d, np.zeros(3), MARGIN)
    assert pair["verdict"] == "undetermined"
    assert pair["std"] == pytest.approx(0.180278, abs=1e-6)
    assert pair["seeds_needed"] == 5
    # Five seeds with the same mean and spread do settle it.
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    five = 0.05 + z / z.std(ddof=1) * pair["std"]
    assert stats.compare_pair(five, np.zeros(5), MARGIN)["verdict"] == "equivalent"


def test_strongly_paired_runs_give_a_narrower_paired_interval_than_welch() -> None:
    """Seeds move both frameworks by ~0.1 point together; same-seed differences stay within 0.01."""
    a = np.array([98.90, 98.95, 98.75, 98.85, 99.00])
    b = a - np.array([0.02, 0.03, 0.01, 0.02, 0.02])
    pair = stats.compare_pair(a, b, MARGIN)
    paired_width = pair["ci90"][1] - pair["ci90"][0]
    welch_width = pair["welch_ci90"][1] - pair["welch_ci90"][0]
    # paired: 2 * t(0.95, 4) * 0.00707 / sqrt(5) = 0.0135; Welch: about 2 * 1.86 * 0.061 = 0.23
    assert paired_width == pytest.approx(0.01349, abs=1e-4)
    assert paired_width < welch_width / 10
    assert pair["welch_ci90"][0] < pair["ci90"][0] < 0.02 < pair["ci90"][1] < pair["welch_ci90"][1]
    assert pair["verdict"] == "equivalent"


def test_one_seed_gives_no_interval() -> None:
    pair = stats.compare_pair([98.9], [98.8], MARGIN)
    assert pair["n"] == 1 and pair["mean"] == pytest.approx(0.1)
    assert pair["ci90"] is None and pair["welch_ci90"] is None
    assert pair["verdict"] == "undetermined" and pair["seeds_needed"] is None
    assert stats.summary([98.9]) == {"n": 1, "mean": 98.9, "std": None, "ci95": None}


def test_the_same_difference_on_every_seed_needs_no_t_statistic() -> None:
    """Accuracies are multiples of 0.01 point, so equal differences happen; no warning, a point interval."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = stats.compare_pair([98.90, 98.95, 98.75], [98.87, 98.92, 98.72], MARGIN)
        zero = stats.compare_pair([98.9, 98.8], [98.9, 98.8], MARGIN)
        big = stats.compare_pair([99.0, 98.9], [98.5, 98.4], MARGIN)
    assert same["verdict"] == "equivalent" and same["ci90"] == pytest.approx([0.03, 0.03])
    assert zero["verdict"] == "equivalent" and zero["ci90"] == [0.0, 0.0]
    assert big["verdict"] == "different" and big["mean"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("mean", "std", "margin", "needed"),
    [
        (0.0, 1.0, 1.0, 5),  # t(0.95, 4) / sqrt(5) = 0.953 < 1; t(0.95, 3) / 2 = 1.177
        (0.5, 0.5, 0.25, 7),  # beyond the margin: t(0.975, 6) / sqrt(7) = 0.925 < 1; n = 6 gives 1.049
        (0.24, 1.0, 0.25, None),  # 0.01 of room at std 1: more than 100 seeds
        (0.0, 0.03, 0.25, 2),  # the measured paired spread: two seeds already settle it
    ],
)
def test_seeds_needed(mean: float, std: float, margin: float, needed: int | None) -> None:
    assert stats.seeds_needed(mean, std, margin) == needed


def test_variation_separates_seed_from_framework() -> None:
    """Per-seed means 1.05, 2.05, 3.05 (std 1); within a seed 0.1 apart (std 0.0707)."""
    v = stats.variation([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]])
    assert v["between_seeds"] == pytest.approx(1.0)
    assert v["between_frameworks"] == pytest.approx(math.sqrt(0.005))
    assert v["ratio"] == pytest.approx(1 / math.sqrt(0.005))
    assert stats.variation([[1.0, 1.1]])["between_seeds"] is None


def test_a_framework_systematically_below_the_others() -> None:
    rng = np.random.default_rng(1)
    base = 98.9 + rng.normal(0, 0.1, 6)
    matrix = np.stack([base + 0.01, base - 0.06, base], axis=1) + rng.normal(0, 0.005, (6, 3))
    others = stats.against_others(matrix, ["pytorch", "tensorflow", "jax"])
    assert others["tensorflow"]["direction"] == "below"
    assert others["tensorflow"]["below"] == 6 and others["tensorflow"]["above"] == 0
    assert others["tensorflow"]["mean"] == pytest.approx(-0.065, abs=0.01)
    assert others["jax"]["direction"] in ("above", "neither")


def test_reaching_a_documented_accuracy() -> None:
    above = stats.reaching([98.90, 98.95, 98.85, 98.92, 98.88], 98.8)
    assert above["seeds"] == 5 and above["verdict"] == "reached"
    mixed = stats.reaching([98.90, 98.95, 98.75], 98.8)
    assert mixed["seeds"] == 2 and mixed["verdict"] == "unsettled"
    below = stats.reaching([98.60, 98.62, 98.58, 98.61], 98.8)
    assert below["seeds"] == 0 and below["verdict"] == "missed"
    exact = stats.reaching([0.988 * 100, 98.9], 98.8)  # 98.80000000000001 or 98.79999999999998
    assert exact["seeds"] == 2
