"""Reporting metrics computed once, in NumPy (float64), from what a framework returns.

Frameworks hand back logits and losses; how those become a test loss and an accuracy is
decided here, so a difference in a reported number is a difference in the model, never in
the bookkeeping.
"""

from __future__ import annotations

import itertools

import numpy as np


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy of (N, 10) logits against N integer labels."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of examples whose largest logit is the label."""
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def plane_loss(a: float, b: float, points: np.ndarray) -> float:
    """Mean absolute error of f = a*x + b*y on (x, y, value) rows."""
    x, y, v = points.T
    return float(np.abs(v - (a * x + b * y)).mean())


def plane_optimum(points: np.ndarray) -> dict[str, float]:
    """Exact L1 optimum: with two parameters some optimum passes through two points.

    The loss is convex and piecewise linear, so a minimum sits at a vertex, where two
    residuals are zero; enumerating the pairs of points finds it.
    """
    best: dict[str, float] = {}
    for i, j in itertools.combinations(range(len(points)), 2):
        lhs = points[[i, j], :2]
        if abs(np.linalg.det(lhs)) < 1e-12:
            continue
        a, b = np.linalg.solve(lhs, points[[i, j], 2])
        loss = plane_loss(a, b, points)
        if not best or loss < best["loss"]:
            best = {"a": float(a), "b": float(b), "loss": loss}
    return best
