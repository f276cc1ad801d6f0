"""Layout conversions between the canonical (PyTorch) weights and NHWC frameworks.

TensorFlow/Keras and Flax store conv kernels as HWIO and dense kernels as (in, out), and
their flatten of an NHWC activation runs over H, W, C, not PyTorch's C, H, W. The fc rows
must therefore be permuted, not just transposed, when weights move between the two.
"""

from __future__ import annotations

import numpy as np

FC_CHW = (32, 7, 7)  # the activation that fc flattens, in canonical (C, H, W) order


def conv_oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def conv_hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def fc_chw_to_hwc(w: np.ndarray) -> np.ndarray:
    """(out, C*H*W) canonical -> (H*W*C, out) kernel for an NHWC flatten."""
    c, h, wd = FC_CHW
    out = w.shape[0]
    return np.ascontiguousarray(w.reshape(out, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, out))


def fc_hwc_to_chw(k: np.ndarray) -> np.ndarray:
    c, h, wd = FC_CHW
    out = k.shape[1]
    return np.ascontiguousarray(k.reshape(h, wd, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * wd))


def to_nhwc(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical state_dict -> {layer: (kernel, bias)} in HWIO / (in, out) layout."""
    return {
        "conv1": (conv_oihw_to_hwio(params["conv1.weight"]), params["conv1.bias"]),
        "conv2": (conv_oihw_to_hwio(params["conv2.weight"]), params["conv2.bias"]),
        "fc": (fc_chw_to_hwc(params["fc.weight"]), params["fc.bias"]),
    }


def from_nhwc(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Inverse of to_nhwc."""
    return {
        "conv1.weight": conv_hwio_to_oihw(layers["conv1"][0]),
        "conv1.bias": np.asarray(layers["conv1"][1]),
        "conv2.weight": conv_hwio_to_oihw(layers["conv2"][0]),
        "conv2.bias": np.asarray(layers["conv2"][1]),
        "fc.weight": fc_hwc_to_chw(layers["fc"][0]),
        "fc.bias": np.asarray(layers["fc"][1]),
    }


def activations_from_nhwc(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each layer's output (Net.layer_outputs) in the canonical layout: NCHW maps, C*H*W flatten.

    An NHWC framework's flatten runs over H, W, C; its rows are regrouped as C, H, W so that the
    flatten output compares element by element with PyTorch's (fc's input, fc_chw_to_hwc's columns).
    """
    canonical = {}
    for name, value in outputs.items():
        value = np.asarray(value)
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif name == "flatten":
            c, h, wd = FC_CHW
            value = value.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(-1, c * h * wd)
        canonical[name] = np.ascontiguousarray(value)
    return canonical
