"""Analytic FLOP counts for the MNIST CNN (a multiply-add counts as 2 FLOPs)."""

from __future__ import annotations

# (output elements, multiply-adds per output element) of each layer, per image.
CONV1 = (24 * 28 * 28, 1 * 5 * 5)
CONV2 = (32 * 14 * 14, 24 * 5 * 5)
FC = (10, 32 * 7 * 7)


def forward_flops_per_image() -> int:
    """Conv and dense multiply-adds: 8.50 MFLOP (bias, ReLU and pooling are < 0.1%)."""
    return sum(2 * n * k for n, k in (CONV1, CONV2, FC))


def train_flops_per_image() -> int:
    """Forward + backward: the backward pass needs input and weight gradients (2x forward),
    except for conv1, whose input gradient is never needed: 24.55 MFLOP."""
    conv1 = 2 * CONV1[0] * CONV1[1]
    return 3 * forward_flops_per_image() - conv1
