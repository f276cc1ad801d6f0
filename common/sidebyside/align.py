"""Line up several columns of code on shared anchor lines by inserting blank filler, never reordering.

Each column is a list of items (source lines); each has anchors: key -> (index of the anchor line,
index where filler may go, which is above the anchor's decorators and comments). An anchor that at
least two columns have is used if it keeps one order in every column; landmarks come first, so a
definition that sits before a landmark in one column and after it in another gives way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from typing import TypeVar

T = TypeVar("T")
FILL = None


def consistent_order(positions: Sequence[dict[str, tuple[int, int]]], keys: list[str]) -> list[str] | None:
    """One order of `keys` that agrees with every column, or None if the columns disagree."""
    graph: TopologicalSorter[str] = TopologicalSorter({key: () for key in keys})
    for column in positions:
        present = sorted((column[key][0], key) for key in keys if key in column)
        for (_, before), (_, after) in pairwise(present):
            graph.add(after, before)
    try:
        return list(graph.static_order())
    except CycleError:
        return None


def anchor_order(positions: Sequence[dict[str, tuple[int, int]]], priority: Iterable[str]) -> list[str]:
    """The anchors to align on, in row order: each key in priority order if it keeps the order."""
    accepted: list[str] = []
    order: list[str] = []
    for key in priority:
        if key in accepted or sum(key in column for column in positions) < 2:
            continue
        trial = consistent_order(positions, [*accepted, key])
        if trial is not None:
            accepted.append(key)
            order = trial
    return order


def align(
    columns: Sequence[list[T]], positions: Sequence[dict[str, tuple[int, int]]], order: list[str]
) -> list[list[T | None]]:
    """The columns with FILL inserted so that each anchor in `order` is on one row; equal lengths."""
    out: list[list[T | None]] = [[] for _ in columns]
    done = [0] * len(columns)
    for key in order:
        have = [c for c, column in enumerate(positions) if key in column and column[key][0] >= done[c]]
        need = {c: len(out[c]) + positions[c][key][0] - done[c] for c in have}
        target = max(need.values(), default=0)
        for c in have:
            line, top = positions[c][key]
            top = max(top, done[c])
            out[c] += [*columns[c][done[c] : top], *[FILL] * (target - need[c]), *columns[c][top:line]]
            done[c] = line
    for c, column in enumerate(columns):
        out[c] += column[done[c] :]
    height = max((len(column) for column in out), default=0)
    return [column + [FILL] * (height - len(column)) for column in out]
