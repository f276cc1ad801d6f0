"""The rows of docs/differences.md's first table (the ledger), as HTML cells keyed by their number.

markdown-it-py is imported inside `read_ledger`, like Pygments in common.sidebyside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LEDGER_PATH = "docs/differences.md"
COLUMNS = ("number", "difference", "pytorch", "tensorflow", "jax", "triptych", "shown_by")


@dataclass(frozen=True)
class LedgerRow:
    """One row; every field but `number` is inline HTML rendered from the Markdown cell."""

    number: str
    difference: str
    pytorch: str
    tensorflow: str
    jax: str
    triptych: str
    shown_by: str


def table_rows(tokens: list) -> list[list]:
    """The inline tokens of each body row of the first table."""
    rows: list[list] = []
    in_body = False
    for token in tokens:
        if token.type == "tbody_open":
            in_body = True
        elif token.type == "tbody_close":
            return rows
        elif in_body and token.type == "tr_open":
            rows.append([])
        elif in_body and token.type == "inline":
            rows[-1].append(token)
    return rows


def read_ledger(root: Path) -> dict[str, LedgerRow]:
    """The ledger rows in document order, keyed by their number as written ("1", ..., "13b")."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse((root / LEDGER_PATH).read_text(encoding="utf-8"))
    ledger: dict[str, LedgerRow] = {}
    for cells in table_rows(tokens):
        if len(cells) != len(COLUMNS):
            raise ValueError(f"{LEDGER_PATH}: a ledger row has {len(cells)} cells, expected {len(COLUMNS)}")
        number = cells[0].content.strip()
        rendered = [md.renderer.render(cell.children or [], md.options, {}).strip() for cell in cells[1:]]
        ledger[number] = LedgerRow(number, *rendered)
    return ledger
