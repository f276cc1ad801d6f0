"""docs/side-by-side.html in a real browser: headless Chromium measures the layout the page promises.

Skipped where Chromium or playwright is missing, with the command that installs them (.ci/run installs
Chromium, so CI always runs these). Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.contract import FRAMEWORKS, LANDMARKS
from common.sidebyside import browser
from common.sidebyside.page import PAGE, SECTIONS
from tests.conftest import ROOT

pytestmark = pytest.mark.browser
URL = (ROOT / PAGE).as_uri()
TOLERANCE_PX = 1.0


def code_cells(fw: str) -> int:
    """Lines of code (not filler) the page holds for a framework, counted in its HTML."""
    return (ROOT / PAGE).read_text(encoding="utf-8").count(f'<td class="src {fw}')


MEASURE_WIDE = """() => {
  const top = (e) => e.getBoundingClientRect().top;
  const spread = (xs) => Math.max(...xs) - Math.min(...xs);
  const sections = [...document.querySelectorAll('main section:not(.ledger)')].map((s) => {
    const tops = [...s.querySelectorAll('thead th')].map(top);
    return {id: s.id, columns: tops.length, spread: spread(tops)};
  });
  const anchors = [];
  for (const tbody of document.querySelectorAll('tbody.fn')) {
    const heads = [...tbody.querySelectorAll('tr.heads > td')].map(top);
    anchors.push({row: tbody.id, key: 'heading', cells: heads.length, spread: spread(heads)});
    const groups = {};
    for (const td of tbody.querySelectorAll('td[data-a]')) (groups[td.dataset.a] ||= []).push(top(td));
    for (const [key, tops] of Object.entries(groups)) {
      anchors.push({row: tbody.id, key, cells: tops.length, spread: spread(tops)});
    }
  }
  const overflowing = [...document.querySelectorAll('td.src')]
    .filter((td) => td.scrollWidth > td.clientWidth + 1)
    .map((td) => td.textContent.slice(0, 60));
  const tables = [...document.querySelectorAll('table.code')].map((t) => t.getBoundingClientRect().right);
  return {
    sections, anchors, overflowing,
    tableRight: Math.max(...tables),
    pageWidth: document.documentElement.scrollWidth,
    viewport: innerWidth,
  };
}"""

VISIBLE_COLUMNS = """(frameworks) => {
  const shown = (e) => e.getClientRects().length > 0;
  const out = {};
  for (const fw of frameworks) {
    const cells = [...document.querySelectorAll(`td.src.${fw}:not(.fill)`)];
    out[fw] = {
      cells: cells.length,
      visible: cells.filter(shown).length,
      width: Math.max(...cells.filter(shown).map((c) => c.getBoundingClientRect().width), 0),
    };
  }
  out.pageWidth = document.documentElement.scrollWidth;
  out.viewport = innerWidth;
  out.tabs = shown(document.querySelector('nav.tabs'));
  return out;
}"""


# A token (or a run of tokens kept together) whose boxes sit on more than one line has been split.
SPLIT_TOKENS = """() => [...document.querySelectorAll('td.src span')]
  .filter((span) => new Set([...span.getClientRects()].map((r) => Math.round(r.top))).size > 1)
  .map((span) => span.textContent)"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    reason = browser.missing()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason}")  # .ci/run installs Chromium
    if reason:
        pytest.skip(reason)
    with browser.chromium() as b:
        yield b


def open_page(chromium: Any, width: int, height: int = 900, **options: Any) -> Any:
    page = chromium.new_page(viewport={"width": width, "height": height}, **options)
    page.goto(URL)
    return page


def test_wide_layout_aligns_sections_and_landmarks(chromium: Any, tmp_path: Path) -> None:
    page = open_page(chromium, 1400)
    found = page.evaluate(MEASURE_WIDE)
    page.screenshot(path=str(tmp_path / "wide-top.png"))
    page.locator("section#step").screenshot(path=str(tmp_path / "wide-step.png"))
    page.close()

    assert [s["id"] for s in found["sections"]] == [s.key for s in SECTIONS]
    for section in found["sections"]:
        assert section["columns"] == 3, section
        assert section["spread"] <= TOLERANCE_PX, section
    for anchor in found["anchors"]:
        assert anchor["cells"] >= 2 and anchor["spread"] <= TOLERANCE_PX, anchor
    landmarks = [a for a in found["anchors"] if a["key"].lstrip("# ") in LANDMARKS]
    assert {(a["row"], a["key"]) for a in landmarks} == {
        (row, f"# {mark}")
        for row in ("mnist-train_step", "parallel-train_step", "plane-train_step-fit_plane")
        for mark in LANDMARKS
    }
    assert all(a["cells"] == 3 for a in landmarks)
    assert len([a for a in found["anchors"] if a["key"] == "heading"]) >= 20


def test_wide_layout_does_not_overflow_at_1400px(chromium: Any) -> None:
    page = open_page(chromium, 1400)
    found = page.evaluate(MEASURE_WIDE)
    split = page.evaluate(SPLIT_TOKENS)
    page.close()
    assert split == []  # lines wrap between tokens only
    assert found["overflowing"] == []
    assert found["pageWidth"] <= found["viewport"] == 1400
    assert found["tableRight"] <= 1400


@pytest.mark.parametrize("width", [1000, 1200])
def test_in_between_widths_keep_alignment_and_never_widen_the_page(chromium: Any, width: int) -> None:
    """Three columns still; a line whose names cannot fit scrolls in its own cell, over nothing else."""
    page = open_page(chromium, width)
    found = page.evaluate(MEASURE_WIDE)
    unscrollable = page.evaluate(
        """() => [...document.querySelectorAll('td.src')]
          .filter((td) => td.scrollWidth > td.clientWidth + 1 && getComputedStyle(td).overflowX !== 'auto')
          .map((td) => td.textContent.slice(0, 60))"""
    )
    split = page.evaluate(SPLIT_TOKENS)
    page.close()
    assert found["pageWidth"] <= width
    assert found["tableRight"] <= width
    assert all(s["spread"] <= TOLERANCE_PX for s in found["sections"])
    assert all(a["spread"] <= TOLERANCE_PX for a in found["anchors"])
    assert unscrollable == []
    assert split == []


def test_narrow_layout_shows_each_implementation_in_a_tab(chromium: Any, tmp_path: Path) -> None:
    page = open_page(chromium, 390, 844, device_scale_factor=1, is_mobile=True, has_touch=True)
    page.evaluate("document.getElementById('step').scrollIntoView()")
    heading_top = "document.querySelector('#step h2').getBoundingClientRect().top"
    for fw in FRAMEWORKS:
        before = page.evaluate(heading_top)
        page.click(f"label[for=show-{fw}]")
        found = page.evaluate(VISIBLE_COLUMNS, list(FRAMEWORKS))
        assert abs(page.evaluate(heading_top) - before) <= 2, "switching tabs must keep the reader's place"
        assert page.evaluate(SPLIT_TOKENS) == []
        page.screenshot(path=str(tmp_path / f"narrow-{fw}.png"))
        assert found["tabs"]
        assert found["pageWidth"] <= found["viewport"] == 390
        assert found[fw]["visible"] == found[fw]["cells"] == code_cells(fw) > 200, fw
        assert found[fw]["width"] > 250, fw  # the one column gets the width
        for other in FRAMEWORKS:
            if other != fw:
                assert found[other]["visible"] == 0, (fw, other)
    page.close()


def luminance(css_colour: str) -> float:
    r, g, b = (int(v) for v in css_colour[css_colour.index("(") + 1 : css_colour.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_light_and_dark_schemes(chromium: Any, tmp_path: Path) -> None:
    colours = {}
    for scheme in ("light", "dark"):
        page = open_page(chromium, 1400, color_scheme=scheme)
        colours[scheme] = page.evaluate(
            """() => [getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color,
                      getComputedStyle(document.querySelector('td.src .tk')).color]"""
        )
        page.locator("section#step").screenshot(path=str(tmp_path / f"{scheme}.png"))
        page.close()
    assert luminance(colours["light"][0]) > 0.9 and luminance(colours["light"][1]) < 0.3
    assert luminance(colours["dark"][0]) < 0.1 and luminance(colours["dark"][1]) > 0.8
    assert colours["light"][2] != colours["dark"][2]  # keywords recoloured, not left dark on dark


def test_print_shows_all_three_columns_in_light_colours(chromium: Any, tmp_path: Path) -> None:
    page = open_page(chromium, 390, color_scheme="dark")
    page.emulate_media(media="print")
    found = page.evaluate(VISIBLE_COLUMNS, list(FRAMEWORKS))
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    pdf = tmp_path / "print.pdf"
    page.pdf(path=str(pdf), format="A4", landscape=True, print_background=True)
    page.close()
    assert not found["tabs"]
    for fw in FRAMEWORKS:
        assert found[fw]["visible"] == found[fw]["cells"] == code_cells(fw) > 200, fw
    assert luminance(background) > 0.9
    assert pdf.stat().st_size > 100_000


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_readme_screenshot_is_one_section(chromium: Any, tmp_path: Path) -> None:
    out = tmp_path / "section.png"
    browser.screenshot_section(chromium, ROOT / PAGE, out)
    width, height = png_size(out)
    assert 1300 <= width <= 1400
    assert 400 <= height <= 2000
