"""Python source to one HTML string per line, highlighted by Pygments, breakable only between tokens.

A whole file is lexed at once (docstrings span lines) and then cut into lines, so that each line can
go into its own table row. Code may wrap to fit a column, but only at spaces or, inside a run too long
for a column, between two tokens (after an opening bracket, before a dot): runs are `nowrap` spans,
so no token is ever split. Pygments is imported inside the functions.
"""

from __future__ import annotations

import html
import re

CLASS_PREFIX = "t"  # Pygments' short classes (n, s, w...) would collide with the page's own
LONG_WORD = 28  # longer runs get break points after opening brackets: a column holds ~50 characters
OPENERS = "({"  # not "[": "gpus[" / "0]" reads worse than a longer line
CLOSERS = ")]}"
LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"


def token_class(ttype: object) -> str:
    from pygments.token import STANDARD_TYPES

    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent  # type: ignore[attr-defined]
    short = STANDARD_TYPES[ttype]  # type: ignore[index]
    return CLASS_PREFIX + short if short else ""


def lex_lines(text: str) -> list[list[tuple[str, str]]]:
    """(css class, text) pieces of each line; a piece is all spaces or has none."""
    from pygments import lex
    from pygments.lexers import PythonLexer

    lines: list[list[tuple[str, str]]] = [[]]
    for ttype, value in lex(text, PythonLexer(stripnl=False, ensurenl=True)):
        css = token_class(ttype)
        for i, part in enumerate(value.split("\n")):
            if i:
                lines.append([])
            lines[-1] += [(css, piece) for piece in re.findall(r"\s+|\S+", part)]
    return lines[: len(text.splitlines())]


def piece_html(css: str, text: str) -> str:
    escaped = html.escape(text, quote=False)
    return f'<span class="{css}">{escaped}</span>' if css else escaped


def needs_nowrap(word: list[tuple[str, str]]) -> bool:
    """Browsers may break after '-', '/', '?'...: protect every run but a bare identifier or number."""
    return len(word) > 1 or re.fullmatch(r"\w+", word[0][1]) is None


def split_points(word: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """A long run cut between tokens: after an opening bracket not closed at once, before a dot."""
    if sum(len(text) for _, text in word) <= LONG_WORD:
        return [word]
    parts: list[list[tuple[str, str]]] = [[]]
    for i, (css, text) in enumerate(word):
        if text == "." and parts[-1]:
            parts.append([])
        parts[-1].append((css, text))
        following = word[i + 1][1] if i + 1 < len(word) else ""
        if text[-1] in OPENERS and following and following[0] not in CLOSERS:
            parts.append([])
    return [part for part in parts if part]


def word_html(word: list[tuple[str, str]]) -> str:
    chunks = []
    for part in split_points(word):
        inner = "".join(piece_html(css, text) for css, text in part)
        chunks.append(f'<span class="nw">{inner}</span>' if needs_nowrap(part) else inner)
    return "<wbr>".join(chunks)


def line_html(pieces: list[tuple[str, str]]) -> str:
    out: list[str] = []
    word: list[tuple[str, str]] = []
    for css, text in pieces:
        if text.isspace():
            if word:
                out.append(word_html(word))
                word = []
            out.append(text)
        else:
            word.append((css, text))
    if word:
        out.append(word_html(word))
    return "".join(out)


def highlight_lines(text: str) -> list[str]:
    """The HTML of every line of a Python source, in order."""
    return [line_html(pieces) for pieces in lex_lines(text)]


def token_css(scope: str) -> tuple[str, str]:
    """Token colours for the light and the dark scheme, each rule scoped under `scope`."""
    from pygments.formatters import HtmlFormatter

    def rules(style: str) -> str:
        defs = HtmlFormatter(style=style, classprefix=CLASS_PREFIX).get_token_style_defs(scope)
        return "\n".join(re.sub(r"\s*/\*.*?\*/", "", rule) for rule in defs)

    return rules(LIGHT_STYLE), rules(DARK_STYLE)
