"""One row of docs/side-by-side.html: each framework's functions side by side, aligned, with the ledger under them.

A row is a tbody: a heading per column (the functions shown, or why a framework has none), one table
row per source line (FILL where a column waits for the others), then the rows of docs/differences.md
that concern those functions.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from common.contract import FRAMEWORKS, LANDMARKS, MODULES, Fn, Module, Row
from common.sidebyside.align import FILL, align, anchor_order
from common.sidebyside.highlight import highlight_lines
from common.sidebyside.ledger import LedgerRow
from common.sidebyside.pysource import SourceFile, read_source

GAP = 0  # a blank between two functions shown in one cell: not a source line


@dataclass(frozen=True)
class Sources:
    files: dict[tuple[str, str], SourceFile]  # (module, framework)
    lines: dict[tuple[str, str], list[str]]  # highlighted HTML of every line


def read_sources(root: Path) -> Sources:
    files, lines = {}, {}
    for module in MODULES:
        for fw in FRAMEWORKS:
            src = read_source(root, f"frameworks/{fw}/{module.name}.py")
            files[module.name, fw] = src
            lines[module.name, fw] = highlight_lines("\n".join(src.lines) + "\n")
    return Sources(files, lines)


def cell_items(src: SourceFile, names: list[str]) -> tuple[list[int], dict[str, tuple[int, int]]]:
    """The line numbers of some functions in file order (GAP between two) and their anchors' positions."""
    items: list[int] = []
    positions: dict[str, tuple[int, int]] = {}
    for block in sorted((src.blocks[name] for name in names), key=lambda b: b.start):
        if items:
            items.append(GAP)
        offset = len(items) - block.start
        items += range(block.start, block.end + 1)
        for anchor in block.anchors:
            positions.setdefault(anchor.key, (anchor.line + offset, anchor.top + offset))
    return items, positions


def priority(row: Row, positions: list[dict[str, tuple[int, int]]]) -> list[str]:
    """Landmarks first, then the row's own definitions, then methods and inner functions."""
    keys = [f"# {mark}" for mark in LANDMARKS] + [f"def {fn.name}" for fn in row.fns]
    for column in positions:
        keys += [key for key in sorted(column, key=lambda k: column[k][0]) if key not in keys]
    return keys


def indent_of(text: str) -> int:
    return len(text) - len(text.lstrip(" ")) if text.strip() else 0


def line_cells(fw: str, item: int | None, src: SourceFile, lines: list[str], anchors: dict[int, str]) -> str:
    if item is FILL:
        return f'<td class="ln fill {fw}"></td><td class="src fill {fw}"></td>'
    if item == GAP:
        return f'<td class="ln {fw}"></td><td class="src {fw}"></td>'
    indent = indent_of(src.lines[item - 1])
    css = f"src {fw} i{indent}" if indent else f"src {fw}"
    anchor = f' data-a="{html.escape(anchors[item])}"' if item in anchors else ""
    return f'<td class="ln {fw}">{item}</td><td class="{css}"{anchor}>{lines[item - 1]}</td>'


def code_lines_html(module: str, names: dict[str, list[str]], row: Row | None, sources: Sources) -> str:
    """The aligned lines of one row: each framework's functions side by side."""
    files = [sources.files[module, fw] for fw in FRAMEWORKS]
    if row is None:
        columns, positions = [list(src.preface) for src in files], [{} for _ in files]
    else:
        cells = [cell_items(src, names[fw]) for src, fw in zip(files, FRAMEWORKS, strict=True)]
        columns, positions = [c[0] for c in cells], [c[1] for c in cells]
    order = anchor_order(positions, priority(row, positions)) if row else []
    anchors = [
        {column[p[key][0]]: key for key in order if key in p} for column, p in zip(columns, positions, strict=True)
    ]
    out = []
    for items in zip(*align(columns, positions, order), strict=True):
        mark = any(str(anchors[c].get(item, "")).startswith("#") for c, item in enumerate(items))
        cells = "".join(
            line_cells(fw, item, files[c], sources.lines[module, fw], anchors[c])
            for c, (fw, item) in enumerate(zip(FRAMEWORKS, items, strict=True))
        )
        out.append(f'<tr class="mark">{cells}</tr>' if mark else f"<tr>{cells}</tr>")
    return "\n".join(out)


def head_cell(fw: str, module: str, fns: tuple[Fn, ...], src: SourceFile) -> str:
    """A column's heading of a row: the functions it shows, with lines, or why it has none."""
    parts = []
    for fn in fns:
        if fw in fn.only:
            block = src.blocks[fn.name]
            parts.append(f'<code class="fn">{fn.name}</code> <span class="at">lines {block.start}–{block.end}</span>')
        else:
            parts.append(f'<span class="why">No <code>{fn.name}</code>: {html.escape(fn.why)}.</span>')
    if not fns:
        parts.append(
            f'<span class="fn">{module}.py, module level</span> <span class="at">docstring, imports, constants</span>'
        )
    return f'<td colspan="2" class="head {fw}">{"<br>".join(parts)}</td>'


def note_html(anchor_id: str, row: LedgerRow) -> str:
    """A ledger row under the code it concerns, each framework's entry in its own column."""
    head = (
        f'<tr class="note-head"><td colspan="6"><a class="rowno" id="{anchor_id}" href="#row-{row.number}">'
        f"Ledger row {row.number}</a> <strong>{row.difference}.</strong> {row.triptych}</td></tr>"
    )
    entries = [row.pytorch, row.tensorflow, row.jax]
    if all(entry in ("", "—") for entry in entries):
        return head
    cells = "".join(
        f'<td colspan="2" class="note {fw}">{entry}</td>' for fw, entry in zip(FRAMEWORKS, entries, strict=True)
    )
    return f'{head}\n<tr class="note-body">{cells}</tr>'


def row_id(module: Module, row: Row | None) -> str:
    return f"{module.name}-" + ("module" if row is None else "-".join(fn.name for fn in row.fns))


def row_html(module: Module, row: Row | None, sources: Sources, ledger: dict[str, LedgerRow]) -> str:
    """One tbody: the column headings, the aligned code, then the ledger rows it shows."""
    fns = row.fns if row else ()
    names = {fw: [fn.name for fn in fns if fw in fn.only] for fw in FRAMEWORKS}
    rid = row_id(module, row)
    heads = "".join(head_cell(fw, module.name, fns, sources.files[module.name, fw]) for fw in FRAMEWORKS)
    body = code_lines_html(module.name, names, row, sources)
    notes = "\n".join(note_html(f"{rid}-row-{n}", ledger[n]) for n in (row.ledger if row else ()))
    notes_html = f'\n<tbody class="notes">\n{notes}\n</tbody>' if notes else ""
    return f'<tbody class="fn" id="{rid}">\n<tr class="heads">{heads}</tr>\n{body}\n</tbody>{notes_html}'
