"""Reading XLA's compiled HLO text: which kernels a compiled step uses, and what each fusion computes.

XLA decides per operation, when it compiles, whether a convolution runs in a library fusion
(`__ynn_fusion`: YNNPACK, `__xnn_fusion`: XNNPACK, oneDNN) or in its own convolution thunk
(Eigen). The compiled module's text (`jax.jit(f).lower(...).compile().as_text()`) says so; the
functions here only read that text, so they need no framework.
"""

from __future__ import annotations

import re

LIBRARIES = {"__ynn_fusion": "YNNPACK", "__xnn_fusion": "XNNPACK", "unfused": "Eigen"}


def computations(hlo: str) -> dict[str, str]:
    """Each computation's text by its name (the first one follows the module's header line)."""
    bodies = {}
    for block in hlo.split("\n\n"):
        head = re.search(r"^(?:ENTRY )?%?([\w.\-]+) \(", block, re.MULTILINE)
        if head:
            bodies[head.group(1)] = block
    return bodies


def fusion_kinds(hlo: str) -> dict[str, str]:
    """Called computation -> the kind of fusion that calls it (backend_config "kind", else HLO's kind)."""
    kinds = {}
    for match in re.finditer(r"kind=(k\w+), calls=%([\w.\-]+)([^\n]*)", hlo):
        config = re.search(r'"kind":"(\w+)"', match.group(3))
        kinds[match.group(2)] = config.group(1) if config else match.group(1)
    return kinds


def conv_fusions(hlo: str) -> list[str]:
    """Where each convolution landed: the kind of fusion around it, or 'unfused'."""
    kinds = fusion_kinds(hlo)
    found = []
    for name, body in computations(hlo).items():
        found += [kinds.get(name, "unfused")] * len(re.findall(r"\bconvolution\(", body))
    return found


def library(kinds: list[str]) -> str:
    """['__ynn_fusion'] -> 'YNNPACK': the kernel libraries of a step's convolutions, in one label."""
    names = sorted({LIBRARIES.get(k, "oneDNN" if "onednn" in k else f"XLA {k}") for k in kinds})
    return "+".join(names) or "unknown"


def fusion_names(hlo: str) -> dict[str, str]:
    """'ynn_fusion.4' -> 'convolution -> f32[100,14,2,14,2,24], jvp()/reduce_sum': what a fusion computes."""
    bodies = computations(hlo)
    names = {}
    for name, shape, called, rest in re.findall(
        r"%([\w.\-]+) = (\S+) fusion\([^)]*\), [^\n]*?calls=%([\w.\-]+)(.*)", hlo
    ):
        what = "convolution" if "convolution(" in bodies.get(called, "") else "elementwise"
        origin = re.search(r'op_name="jit\(\w+\)/([^"]+)"', rest)
        names[name] = f"{what} -> {shape.split('{')[0]}" + (f", {origin.group(1)}" if origin else "")
    return names
