"""Fit f = a*x + b*y to five points by gradient descent on the mean absolute error."""

from __future__ import annotations

import numpy as np
import torch

from common.config import RunConfig
from common.data import PLANE_POINTS
from common.weights import plane_start
from frameworks.pytorch.runtime import torch_device


def loss_fn(a: torch.Tensor, b: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Mean |v - (a*x + b*y)|; d|r|/dr at r = 0 is 0 in PyTorch (the project's convention)."""
    x, y, v = points.T
    return torch.mean(torch.abs(v - (a * x + b * y)))


def fit_plane(cfg: RunConfig, device: str) -> np.ndarray:
    """Run cfg.plane.steps updates; return (a, b) after each one, shape (steps, 2)."""
    dtype, where = getattr(torch, cfg.plane.dtype), torch_device(device)
    points = torch.tensor(PLANE_POINTS, dtype=dtype, device=where)
    a0, b0 = plane_start(cfg.seed)
    a = torch.tensor(a0, dtype=dtype, device=where, requires_grad=True)
    b = torch.tensor(b0, dtype=dtype, device=where, requires_grad=True)
    trajectory = np.empty((cfg.plane.steps, 2))
    for step in range(cfg.plane.steps):
        # Forward pass
        loss = loss_fn(a, b, points)
        # Compute gradients
        a.grad, b.grad = None, None  # .backward() accumulates into .grad
        loss.backward()
        # Update weights
        with torch.no_grad():  # an in-place update must not be recorded by autograd
            a -= cfg.plane.lr * a.grad
            b -= cfg.plane.lr * b.grad
        trajectory[step] = a.item(), b.item()
    return trajectory


def abs_grad_at_zero() -> float:
    """d|r|/dr at exactly r = 0, as this framework's autodiff computes it."""
    r = torch.tensor(0.0, requires_grad=True)
    torch.abs(r).backward()
    return float(r.grad)
