"""Fit f = a*x + b*y to five points by gradient descent on the mean absolute error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.config import RunConfig
from common.data import PLANE_POINTS
from common.weights import plane_start


@jax.custom_jvp
def abs_(r: jax.Array) -> jax.Array:
    """|r| whose derivative at r = 0 is 0, as in PyTorch and TensorFlow.

    jax.grad(jnp.abs)(0.0) is 1.0; the project's convention is the subgradient 0
    (docs/differences.md), so the derivative is given as sign(r), which is 0 at 0.
    """
    return jnp.abs(r)


@abs_.defjvp
def abs_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    (r,), (dr,) = primals, tangents
    return jnp.abs(r), jnp.sign(r) * dr


def loss_fn(params: jax.Array, points: jax.Array) -> jax.Array:
    """Mean |v - (a*x + b*y)| with params = [a, b]."""
    a, b = params
    x, y, v = points.T
    return jnp.mean(abs_(v - (a * x + b * y)))


@jax.jit  # compiled once; JAX arrays are immutable, so the step returns new params
def train_step(params: jax.Array, points: jax.Array, lr: float) -> jax.Array:
    # Forward pass
    # Compute gradients (jax.grad differentiates the whole loss function in one call)
    grads = jax.grad(loss_fn)(params, points)
    # Update weights
    return params - lr * grads


def fit_plane(cfg: RunConfig, device: str) -> np.ndarray:
    """Run cfg.plane.steps updates; return (a, b) after each one, shape (steps, 2)."""
    points = jnp.asarray(PLANE_POINTS, dtype=cfg.plane.dtype)
    params = jnp.asarray(plane_start(cfg.seed), dtype=cfg.plane.dtype)
    trajectory = []
    for _ in range(cfg.plane.steps):
        params = train_step(params, points, cfg.plane.lr)
        trajectory.append(params)
    return np.array(jax.device_get(trajectory))  # one transfer of the whole list


def abs_grad_at_zero() -> float:
    """d|r|/dr at exactly r = 0 for the |r| this package trains with (abs_, not jnp.abs)."""
    return float(jax.grad(abs_)(0.0))
