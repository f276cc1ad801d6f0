"""Fit f = a*x + b*y to five points by gradient descent on the mean absolute error."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common.config import RunConfig
from common.data import PLANE_POINTS
from common.weights import plane_start


def loss_fn(a: tf.Variable, b: tf.Variable, points: tf.Tensor) -> tf.Tensor:
    """Mean |v - (a*x + b*y)|; d|r|/dr at r = 0 is 0 in TensorFlow (the project's convention)."""
    x, y, v = tf.unstack(points, axis=1)
    return tf.reduce_mean(tf.abs(v - (a * x + b * y)))


def fit_plane(cfg: RunConfig, device: str) -> np.ndarray:
    """Run cfg.plane.steps updates; return (a, b) after each one, shape (steps, 2)."""
    points = tf.constant(PLANE_POINTS, dtype=cfg.plane.dtype)
    a0, b0 = plane_start(cfg.seed)
    a = tf.Variable(a0, dtype=cfg.plane.dtype)
    b = tf.Variable(b0, dtype=cfg.plane.dtype)
    lr = tf.constant(cfg.plane.lr, dtype=cfg.plane.dtype)

    @tf.function  # traced once into a graph: the eager loop would dispatch op by op
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            # Forward pass
            loss = loss_fn(a, b, points)
        # Compute gradients
        da, db = tape.gradient(loss, [a, b])
        # Update weights
        a.assign_sub(lr * da)
        b.assign_sub(lr * db)
        return tf.stack([a, b])

    return np.array([train_step().numpy() for _ in range(cfg.plane.steps)])


def abs_grad_at_zero() -> float:
    """d|r|/dr at exactly r = 0, as this framework's autodiff computes it."""
    r = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        y = tf.abs(r)
    return float(tape.gradient(y, r))
