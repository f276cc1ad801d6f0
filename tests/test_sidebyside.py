"""docs/side-by-side.html: generated, committed, complete, aligned, self-contained (no browser needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from common.contract import FRAMEWORKS, LANDMARKS, MODULES
from common.sidebyside.align import FILL, align, anchor_order
from common.sidebyside.ledger import read_ledger
from common.sidebyside.page import COMMAND, PAGE, SECTION_KEYS, pinned_versions, render, version_label
from common.sidebyside.pysource import read_source
from tests.conftest import ROOT

RENDERER_DISTS = ("pygments", "markdown-it-py")


def renderer_mismatch() -> str | None:
    """The page depends on the highlighter's and Markdown renderer's versions: compare only with the pins."""
    pins = pinned_versions(ROOT)
    for dist in RENDERER_DISTS:
        installed, pinned = version(dist), pins.get(dist)
        if installed != pinned:
            return f"{dist} {installed} is installed, {pinned} is pinned: pip install -c constraints.txt {dist}"
    return None


@pytest.fixture(scope="module")
def page() -> str:
    return render(ROOT)


def test_committed_page_is_what_the_sources_give(page: str) -> None:
    mismatch = renderer_mismatch()
    if mismatch:
        pytest.skip(mismatch)
    committed = (ROOT / PAGE).read_text(encoding="utf-8")
    assert committed == page, f"{PAGE} is stale: run `{COMMAND}` and commit it"


def test_check_command_agrees() -> None:
    if renderer_mismatch():
        pytest.skip(renderer_mismatch())
    proc = subprocess.run(
        [sys.executable, "-m", "common.sidebyside", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{PAGE} is up to date"


def test_rendering_is_deterministic_and_names_no_local_path(page: str) -> None:
    assert render(ROOT) == page
    assert str(ROOT) not in page
    assert "/home/" not in page and "/tmp/" not in page


def test_page_is_self_contained(page: str) -> None:
    """Inline CSS only: no script, no stylesheet or image to fetch, no address outside the repository."""
    assert "<style>" in page
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "http://", "https://"):
        assert needle not in page, needle


def test_every_ledger_row_is_cited_and_every_citation_exists(page: str) -> None:
    ledger = read_ledger(ROOT)
    cited = [n for module in MODULES for row in module.rows for n in row.ledger]
    assert set(cited) == set(ledger), (sorted(set(ledger) - set(cited)), sorted(set(cited) - set(ledger)))
    for n in ledger:
        assert f'id="row-{n}"' in page
        assert re.search(rf'<a class="rowno" id="[\w-]+-row-{n}" href="#row-{n}">Ledger row {n}</a>', page), n


def test_ledger_is_read_in_document_order_with_its_markdown() -> None:
    ledger = read_ledger(ROOT)
    assert list(ledger) == [*map(str, range(1, 14)), "13b", "14", "15", "16", "18", "19"]
    assert ledger["6"].pytorch.startswith("<code>F.cross_entropy(logits, target)</code>")
    assert ledger["7"].difference == "d|r|/dr at r = 0"  # escaped pipes inside a table cell
    assert "<strong>target first</strong>" in ledger["6"].tensorflow


def test_sections_follow_the_recipe_and_each_row_has_one() -> None:
    stages = [row.stage for module in MODULES for row in module.rows] + [m.preface_stage for m in MODULES]
    assert set(stages) == set(SECTION_KEYS)
    order = ["data", "model", "loss", "optimizer", "step", "loop", "eval", "plane-loss", "plane-step", "plane-abs"]
    assert [key for key in SECTION_KEYS if key in order] == order


def shown_lines(page: str) -> dict[tuple[str, str], list[list[int]]]:
    """(file, framework) -> the line numbers of each tbody, in page order."""
    shown: dict[tuple[str, str], list[list[int]]] = {}
    for section in page.split("<section ")[1:]:
        files = dict(re.findall(r"frameworks/(\w+)/(\w+)\.py</span>", section))
        for tbody in re.findall(r'<tbody class="fn".*?</tbody>', section, flags=re.S):
            for fw, module in files.items():
                numbers = [int(n) for n in re.findall(rf'<td class="ln {fw}">(\d+)</td>', tbody)]
                shown.setdefault((module, fw), []).append(numbers)
    return shown


def test_every_line_is_shown_once_and_never_reordered(page: str) -> None:
    shown = shown_lines(page)
    assert len(shown) == len(MODULES) * len(FRAMEWORKS)
    for (module, fw), groups in shown.items():
        lines = (ROOT / "frameworks" / fw / f"{module}.py").read_text().splitlines()
        for numbers in groups:
            assert numbers == sorted(numbers), (module, fw)
        everything = sorted(n for numbers in groups for n in numbers)
        assert len(everything) == len(set(everything)), (module, fw)
        non_blank = [i for i, line in enumerate(lines, start=1) if line.strip()]
        assert set(non_blank) <= set(everything), (module, fw, sorted(set(non_blank) - set(everything)))


def tbody(page: str, row_id: str) -> str:
    match = re.search(rf'<tbody class="fn" id="{row_id}">(.*?)</tbody>', page, flags=re.S)
    assert match, row_id
    return match.group(1)


@pytest.mark.parametrize("row_id", ["mnist-train_step", "plane-train_step-fit_plane"])
def test_landmarks_share_one_table_row(page: str, row_id: str) -> None:
    rows = re.findall(r"<tr[^>]*>.*?</tr>", tbody(page, row_id), flags=re.S)
    for mark in LANDMARKS:
        holding = [row for row in rows if f'data-a="# {mark}"' in row]
        assert len(holding) == 1, mark
        assert holding[0].count(f'data-a="# {mark}"') == 3, mark
        assert holding[0].startswith('<tr class="mark">')


def test_forward_methods_and_inner_steps_align(page: str) -> None:
    """Net.forward / call / __call__ on one row; TensorFlow's inner train_step beside JAX's."""
    net = re.findall(r"<tr[^>]*>.*?</tr>", tbody(page, "mnist-Net"), flags=re.S)
    assert sum(row.count('data-a="def forward"') == 3 for row in net) == 1
    plane = re.findall(r"<tr[^>]*>.*?</tr>", tbody(page, "plane-train_step-fit_plane"), flags=re.S)
    assert sum(row.count('data-a="def train_step"') == 2 for row in plane) == 1


def test_framework_specific_rows_say_why_in_the_empty_cells(page: str) -> None:
    body = tbody(page, "mnist-max_pool")
    assert body.count('<span class="why">No <code>max_pool</code>:') == 2
    assert body.count('<td class="src fill pytorch"></td>') == body.count('<td class="ln jax">')
    assert tbody(page, "mnist-forward").count('<span class="why">No <code>forward</code>:') == 1


def test_page_shows_the_pinned_versions(page: str) -> None:
    pins = pinned_versions(ROOT)
    assert version_label("pytorch", pins) == f"PyTorch {pins['torch']}"
    label = version_label("tensorflow", pins)
    assert label == f"TensorFlow {pins['tensorflow-cpu']} · Keras {pins['keras']}"
    assert label in page
    assert f"JAX {pins['jax']} · Flax {pins['flax']} · Optax {pins['optax']}" in page


def test_align_puts_each_anchor_on_one_row_without_reordering() -> None:
    columns = [["a", "@d", "L", "b"], ["x", "y", "z", "L"], ["L", "q"]]
    positions = [{"L": (2, 1)}, {"L": (3, 3)}, {"L": (0, 0)}]  # column 0: filler goes above its decorator
    out = align(columns, positions, ["L"])
    assert [column.index("L") for column in out] == [3, 3, 3]
    assert out[0] == ["a", FILL, "@d", "L", "b"]
    assert out[2] == [FILL, FILL, FILL, "L", "q"]
    for before, after in zip(columns, out, strict=True):
        assert [item for item in after if item is not FILL] == before
        assert len(after) == 5


def test_anchor_order_drops_an_anchor_that_disagrees_with_the_landmarks() -> None:
    positions = [{"def f": (0, 0), "# F": (5, 5)}, {"def f": (0, 0), "# F": (7, 7)}, {"# F": (1, 1), "def f": (9, 9)}]
    assert anchor_order(positions, ["# F", "def f"]) == ["# F"]
    assert anchor_order(positions[:2], ["# F", "def f"]) == ["def f", "# F"]


def test_blocks_take_their_comments_and_decorators() -> None:
    src = read_source(ROOT, "frameworks/tensorflow/mnist.py")
    block = src.blocks["train_step"]
    assert src.lines[block.start - 1].startswith("# A plain graph")
    assert src.lines[block.end - 1].strip() == "return loss"
    keys = [anchor.key for anchor in block.anchors]
    assert keys == ["def train_step", *(f"# {mark}" for mark in LANDMARKS)]
    assert block.anchors[0].top == block.start


def copy_tree(tmp_path: Path) -> Path:
    for name in ("frameworks", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "constraints.txt", tmp_path)
    return tmp_path


def test_render_refuses_sources_that_break_the_contract(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    path = root / "frameworks" / "pytorch" / "mnist.py"
    path.write_text(path.read_text() + "\n\ndef shard_batch(x):\n    return x\n")
    with pytest.raises(ValueError, match=r"defines shard_batch, which common/contract\.py does not list"):
        render(root)


def test_a_changed_source_changes_the_page(tmp_path: Path, page: str) -> None:
    """What makes the committed page stale: any edit of a framework file shows on the page."""
    root = copy_tree(tmp_path)
    path = root / "frameworks" / "jax" / "mnist.py"
    path.write_text(path.read_text().replace("# Update weights", "# Update weights (Optax)"))
    changed = render(root)
    assert changed != page
    assert "(Optax)" in changed
