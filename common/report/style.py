"""How each framework is drawn, the same in every figure (curves.png, the --seeds figure, bench.png).

Its own module so that plots.py and seedplots.py both read it without importing each other.
A framework without an entry is drawn in FALLBACK's grey: a fourth one needs none to be plotted.
"""

from __future__ import annotations

from typing import Any

STYLE = {
    "pytorch": {"color": "tab:red", "linestyle": "-", "marker": "o", "size": 9.0, "width": 2.6},
    "tensorflow": {"color": "tab:blue", "linestyle": "--", "marker": "s", "size": 7.0, "width": 2.0},
    "jax": {"color": "tab:green", "linestyle": ":", "marker": "^", "size": 5.5, "width": 2.0},
}
FALLBACK = {"color": "tab:gray", "linestyle": "-.", "marker": "D", "size": 5.0, "width": 1.5}


def style(framework: str) -> dict[str, Any]:
    return STYLE.get(framework, FALLBACK)
