"""A framework source file cut into its top-level functions, each with the lines to align on.

Read with `ast` (never imported). A function's block starts at the comments and decorators directly
above it, so a reader sees them with it; every other line belongs to the module's preface
(docstring, imports, constants).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from common.contract import FORWARD_METHODS, LANDMARKS

LANDMARK_RE = re.compile(r"^\s*#\s*(" + "|".join(re.escape(mark) for mark in LANDMARKS) + r")\b")
FORWARD_NAMES = frozenset(FORWARD_METHODS.values())


@dataclass(frozen=True)
class Anchor:
    """A line that should sit on the same row in every column that has it."""

    key: str  # "# Forward pass", "def train_step", "def forward" (the forward method under any name)
    line: int  # 1-based line of the comment or of the `def`
    top: int  # first line of its decorators and comments: filler goes above those, not between


@dataclass(frozen=True)
class Block:
    name: str
    start: int
    end: int
    anchors: tuple[Anchor, ...]


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the repository root, for the page
    lines: tuple[str, ...]
    blocks: dict[str, Block]
    preface: tuple[int, ...]  # line numbers outside every block, runs of blank lines kept as one


def header_top(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: tuple[str, ...]) -> int:
    """First line of a definition's decorators and of the comment lines directly above them."""
    top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    while top > 1 and lines[top - 2].strip().startswith("#"):
        top -= 1
    return top


def def_key(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, in_class: bool) -> str:
    name = "forward" if in_class and node.name in FORWARD_NAMES else node.name
    return f"def {name}"


def nested_anchors(node: ast.AST, lines: tuple[str, ...], in_class: bool) -> list[Anchor]:
    """Methods and inner functions of a definition, in source order."""
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append(Anchor(def_key(child, in_class), child.lineno, header_top(child, lines)))
            found += nested_anchors(child, lines, isinstance(child, ast.ClassDef))
        else:
            found += nested_anchors(child, lines, False)
    return found


def block_of(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lines: tuple[str, ...]) -> Block:
    start, end = header_top(node, lines), node.end_lineno or node.lineno
    anchors = [Anchor(def_key(node, False), node.lineno, start)]
    anchors += nested_anchors(node, lines, isinstance(node, ast.ClassDef))
    for number in range(start, end + 1):
        match = LANDMARK_RE.match(lines[number - 1])
        if match:
            anchors.append(Anchor(f"# {match.group(1)}", number, number))
    return Block(node.name, start, end, tuple(sorted(anchors, key=lambda a: a.line)))


def collapse_blank_runs(numbers: list[int], lines: tuple[str, ...]) -> tuple[int, ...]:
    """Drop leading, trailing and repeated blank lines."""
    kept: list[int] = []
    for number in numbers:
        blank = not lines[number - 1].strip()
        if blank and (not kept or not lines[kept[-1] - 1].strip()):
            continue
        kept.append(number)
    while kept and not lines[kept[-1] - 1].strip():
        kept.pop()
    return tuple(kept)


def read_source(root: Path, relative: str) -> SourceFile:
    text = (root / relative).read_text(encoding="utf-8")
    lines = tuple(text.splitlines())
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    blocks = {node.name: block_of(node, lines) for node in ast.parse(text).body if isinstance(node, defs)}
    inside = {n for b in blocks.values() for n in range(b.start, b.end + 1)}
    outside = [n for n in range(1, len(lines) + 1) if n not in inside]
    return SourceFile(relative, lines, blocks, collapse_blank_runs(outside, lines))
