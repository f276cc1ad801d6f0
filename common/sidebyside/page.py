"""docs/side-by-side.html: the three implementations in three columns, generated from the sources.

`make read` (python -m common.sidebyside) writes the page and prints its path; `--check` exits 1 when
the committed page is not what the sources give; `--screenshot` writes docs/side-by-side.png (one
section, for the README) with headless Chromium. The framework sources are parsed, never imported,
so the page builds where no framework is installed. Versions are the pins of constraints.txt, not
what happens to be installed, so the page is the same byte for byte wherever it is generated.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from common.contract import FRAMEWORK_TITLES, FRAMEWORKS, LANDMARKS, MODULES, Module, Row, problems
from common.sidebyside.coderows import Sources, indent_of, read_sources, row_html, row_id
from common.sidebyside.highlight import token_css
from common.sidebyside.ledger import LEDGER_PATH, LedgerRow, read_ledger

ROOT = Path(__file__).resolve().parents[2]
PAGE = "docs/side-by-side.html"
SCREENSHOT = "docs/side-by-side.png"
STYLESHEET = Path(__file__).with_name("page.css")
COMMAND = "make read"


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    lede: str  # HTML


SECTIONS = (
    Section(
        "setup",
        "Set-up: device, threads and numerics",
        "Each worker configures its framework once, before any tensor exists: the device, the number of"
        " threads, and the numerics profile. Where a default would change a number (TF32 on GPUs, Keras's"
        " float32 optimizer constants, JAX's float32-only default), <code>runtime.py</code> says so and"
        " sets it.",
    ),
    Section(
        "imports",
        "The MNIST files: what each one imports",
        "Each file imports its framework and <code>common</code>, nothing else: data, batch order, initial"
        " weights and metrics are shared, so what differs below is framework code. TensorFlow and JAX"
        " also import the layout converters, because the canonical checkpoint is PyTorch's.",
    ),
    Section(
        "data",
        "Data onto the device",
        "The whole split is copied to the device once; each training step then gathers its batch there,"
        " by index, in the shared batch order. PyTorch puts the channel axis before height and width"
        " (NCHW), TensorFlow and JAX after them (NHWC).",
    ),
    Section(
        "model",
        "The model",
        "One CNN: conv 1&rarr;24 5&times;5, ReLU, 2&times;2 max-pool, conv 24&rarr;32 5&times;5, ReLU,"
        " max-pool, dense 1568&rarr;10, as each framework's module class. Every framework starts from"
        " the same canonical weights (PyTorch's <code>state_dict</code> layout), converted on the way in"
        " and out.",
    ),
    Section(
        "loss",
        "The loss",
        "Mean cross-entropy of the logits against integer labels. The three library calls differ in the"
        " order of their arguments, in whether they expect logits, and in whether they average.",
    ),
    Section(
        "optimizer",
        "The optimizer",
        "SGD with momentum (the default) or Adam, with every constant spelled out so that the three"
        " visibly use the same ones, even where a framework's default would do.",
    ),
    Section(
        "step",
        "One training step",
        "Forward pass, gradients, update: the three landmarks are on the same rows. PyTorch runs each line"
        " as it is reached and accumulates into <code>.grad</code>; TensorFlow records the forward pass"
        " on a <code>GradientTape</code> inside a <code>tf.function</code>; JAX differentiates the whole"
        " loss function in one call under <code>nnx.jit</code>, so its forward pass and its gradients"
        " are one line.",
    ),
    Section(
        "loop",
        "The training loop",
        "The same loop in all three: the shared batch order of each epoch, steps in chunks with one host"
        " read of the losses per chunk (steps are queued on the device until then), and the test set"
        " scored once per epoch.",
    ),
    Section(
        "eval",
        "Evaluation",
        "<code>predict</code> returns the logits of every test image, batch by batch; accuracy and loss"
        " are computed once, in <code>common</code>. <code>probe</code> returns the untrained model's"
        " logits, loss and gradients on the first batch, for the parity checks.",
    ),
    Section(
        "dp-engine",
        "Several devices: the engine",
        "<code>--devices N</code> trains data-parallel through each framework's own engine: PyTorch's"
        " <code>DistributedDataParallel</code> in one process per replica, TensorFlow's"
        " <code>MirroredStrategy</code> over N devices, JAX's mesh with the batch sharded along a data axis."
        " The global batch and its order are the shared ones; each replica holds its rows.",
    ),
    Section(
        "dp-step",
        "Several devices: one data-parallel step",
        "The single-device step, spread: DDP all-reduces the gradients during <code>backward()</code>;"
        " TensorFlow runs the step on every replica with <code>strategy.run</code>, each replica's loss a"
        " share of the global mean; JAX compiles the same global-batch program and XLA inserts the"
        " all-reduce.",
    ),
    Section(
        "dp-loop",
        "Several devices: the loop, and the check against one device",
        "The loop is the single-device one over sharded batches. <code>reference</code> runs 30 float64"
        " steps on one device and on N, and the first float32 gradients, for the parity checks that"
        " every data-parallel run adds.",
    ),
    Section(
        "plane-loss",
        "The plane fit: its loss",
        "f(x, y) = a&middot;x + b&middot;y against five points, mean absolute error. The derivative of"
        " |r| at r = 0 is 0 in PyTorch and TensorFlow but 1 in JAX, so JAX's file defines its own |r|.",
    ),
    Section(
        "plane-step",
        "The plane fit: its gradient step",
        "Plain gradient descent with each framework's own autodiff. PyTorch steps in the body of its"
        " loop; TensorFlow compiles the step as a <code>tf.function</code> inside <code>fit_plane</code>;"
        " JAX compiles a function that returns new parameters, because JAX arrays are immutable.",
    ),
    Section(
        "plane-abs",
        "The plane fit: d|r|/dr at r = 0",
        "What each framework's autodiff gives for the derivative of |r| at exactly 0, as the tests ask it.",
    ),
    Section(
        "bench",
        "Timing the training step",
        "<code>bench.py</code> reuses the model, optimizer, step and data placement above; only the"
        " synchronisation is each framework's own, because every framework queues work and returns at"
        " once.",
    ),
    Section(
        "textbook",
        "The textbook loops: the speed bar",
        "<code>--benchmark --textbook</code> also times each framework's own textbook loop for the same"
        " model, as its tutorials write it: PyTorch's <code>DataLoader</code> and eager loop from"
        " pytorch/examples, Keras's <code>model.fit</code>, the Flax NNX MNIST tutorial with"
        " <code>nnx.max_pool</code>. They appear only here, as baselines: the training runs above use the"
        " written-out loops.",
    ),
)
SECTION_KEYS = tuple(section.key for section in SECTIONS)

# (label, distributions to look for in constraints.txt, first found wins)
VERSION_PARTS = {
    "pytorch": (("PyTorch", ("torch",)),),
    "tensorflow": (("TensorFlow", ("tensorflow-cpu", "tensorflow")), ("Keras", ("keras",))),
    "jax": (("JAX", ("jax",)), ("Flax", ("flax",)), ("Optax", ("optax",))),
}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(root: Path) -> dict[str, str]:
    """Distribution -> version, from the `name==version` lines of constraints.txt (local tags and a platform's
    environment marker dropped: every platform's line pins the same version)."""
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].split(";")[0].strip().partition("==")
        if sep:
            pins[normalise(name)] = version.lstrip("=").split("+")[0]
    return pins


def version_label(framework: str, pins: dict[str, str]) -> str:
    """'TensorFlow 2.21.0 · Keras 3.15.1': the framework and the libraries its file uses."""
    parts = []
    for label, dists in VERSION_PARTS[framework]:
        version = next((pins[d] for d in dists if d in pins), None)
        parts.append(f"{label} {version}" if version else label)
    return " · ".join(parts)


def installed_mismatches(pins: dict[str, str]) -> list[str]:
    """Installed versions that differ from the pins: the page shows the pins, this says where you differ."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for parts in VERSION_PARTS.values():
        for _, dists in parts:
            for dist in dists:
                try:
                    installed = version(dist).split("+")[0]
                except PackageNotFoundError:
                    continue
                if dist in pins and installed != pins[dist]:
                    found.append(f"{dist} {installed} is installed; the page shows the pinned {pins[dist]}")
    return found


def section_rows(key: str) -> list[tuple[Module, Row | None]]:
    """The module prefaces and rows of a section, in the order of MODULES."""
    found: list[tuple[Module, Row | None]] = []
    for module in MODULES:
        if module.preface_stage == key:
            found.append((module, None))
        found += [(module, row) for row in module.rows if row.stage == key]
    return found


def column_heads(modules: list[str], labels: dict[str, str]) -> str:
    cells = []
    for fw in FRAMEWORKS:
        files = ", ".join(f"frameworks/{fw}/{m}.py" for m in modules)
        cells.append(
            f'<th colspan="2" class="{fw}"><span class="fw">{labels[fw]}</span> <span class="file">{files}</span></th>'
        )
    return f"<thead><tr>{''.join(cells)}</tr></thead>"


def citations(rows: list[tuple[Module, Row | None]], ledger: dict[str, LedgerRow]) -> str:
    first = {}  # ledger row -> the first function row of this section that shows it
    for module, row in rows:
        for n in row.ledger if row else ():
            first.setdefault(n, row_id(module, row))
    links = [
        f'<a href="#{where}-row-{n}">{n}&nbsp;{strip_tags(ledger[n].difference)}</a>' for n, where in first.items()
    ]
    return f'<p class="cites">Ledger rows here: {" · ".join(links)}</p>' if links else ""


def strip_tags(text: str) -> str:
    return re.sub(r"<[^>]+>", "", text)


def section_html(
    number: int, section: Section, sources: Sources, ledger: dict[str, LedgerRow], labels: dict[str, str]
) -> str:
    rows = section_rows(section.key)
    modules = list(dict.fromkeys(module.name for module, _ in rows))
    colgroup = "<colgroup>" + '<col class="ln"><col class="src">' * len(FRAMEWORKS) + "</colgroup>"
    tbodies = "\n".join(row_html(module, row, sources, ledger) for module, row in rows)
    return (
        f'<section id="{section.key}">\n<h2><span class="no">{number}</span> {section.title}</h2>\n'
        f'<div class="lede"><p>{section.lede}</p>{citations(rows, ledger)}</div>\n'
        f'<div class="wrap"><table class="code">\n{colgroup}\n{column_heads(modules, labels)}\n{tbodies}\n</table>'
        "</div>\n</section>"
    )


def cited_at(ledger: dict[str, LedgerRow]) -> dict[str, list[tuple[str, str]]]:
    """Ledger row -> (anchor, 'Section: function') of every place the page shows it."""
    places: dict[str, list[tuple[str, str]]] = {n: [] for n in ledger}
    titles = {section.key: section.title for section in SECTIONS}
    for module in MODULES:
        for row in module.rows:
            for n in row.ledger:
                where = f"{titles[row.stage]}: {', '.join(fn.name for fn in row.fns)}"
                places.setdefault(n, []).append((f"{row_id(module, row)}-row-{n}", where))
    return places


def ledger_index_html(ledger: dict[str, LedgerRow]) -> str:
    items = []
    for n, places in cited_at(ledger).items():
        links = " · ".join(f'<a href="#{anchor}">{html.escape(where)}</a>' for anchor, where in places)
        items.append(
            f'<li id="row-{n}"><span class="rowno">{n}</span> <strong>{ledger[n].difference}</strong> '
            f'<span class="at">shown by {ledger[n].shown_by}</span><br>{links}</li>'
        )
    return (
        f'<section id="ledger" class="ledger">\n<h2>The ledger, row by row</h2>\n<div class="lede"><p>'
        f'Every row of <a href="differences.md">{LEDGER_PATH}</a>, which explains each difference that moves a'
        " number and the test that shows it, and the places on this page where its code is."
        f'</p></div>\n<ul class="index">\n{chr(10).join(items)}\n</ul>\n</section>'
    )


def stylesheet(sources: Sources) -> str:
    """The page's CSS, Pygments' colours for both schemes, and hanging indents for the indents used."""
    light, dark = token_css(".code")
    indents = sorted({indent_of(line) for src in sources.files.values() for line in src.lines} | {0})
    hanging = "\n".join(
        f".code td.src.i{i} {{ padding-left: calc(var(--pad) + {i + 4}ch); text-indent: -{i + 4}ch; }}"
        for i in indents
        if i
    )
    base = STYLESHEET.read_text(encoding="utf-8")
    return (
        f"{base}\n{hanging}\n@media print, (prefers-color-scheme: light) {{\n{light}\n}}\n"
        f"@media screen and (prefers-color-scheme: dark) {{\n{dark}\n}}"
    )


def tabs_html(labels: dict[str, str]) -> str:
    """Radio buttons and their labels: on a narrow screen they choose the column, with CSS alone."""
    inputs = "\n".join(
        f'<input type="radio" name="column" id="show-{fw}" class="tab-input"{" checked" if i == 0 else ""}>'
        for i, fw in enumerate(FRAMEWORKS)
    )
    labels_html = "".join(f'<label for="show-{fw}" class="{fw}">{FRAMEWORK_TITLES[fw]}</label>' for fw in FRAMEWORKS)
    return f'{inputs}\n<nav class="tabs" aria-label="Framework shown">{labels_html}</nav>'


def header_html(labels: dict[str, str]) -> str:
    toc = "".join(f'<li><a href="#{s.key}">{s.title}</a></li>' for s in SECTIONS)
    versions = " · ".join(f'<span class="{fw}">{labels[fw]}</span>' for fw in FRAMEWORKS)
    marks = ", ".join(f"<code># {mark}</code>" for mark in LANDMARKS)
    return (
        '<header class="top">\n<h1>PyTorch, TensorFlow and JAX, side by side</h1>\n'
        "<p>The MNIST CNN and the plane fit of <strong>triptych</strong>, one framework per column, in the"
        " order a training program is taught: data, model, loss, optimizer, training step, loop, evaluation."
        f" The same step sits on the same row: lines align on the comment landmarks {marks} and on"
        ' matching definitions. <span class="fill-sample" aria-hidden="true"></span>&nbsp;Hatched rows are'
        " filler: code is never reordered, and line numbers are those of the files. Under the code, the rows of"
        f' <a href="differences.md">{LEDGER_PATH}</a> say where the frameworks differ and what triptych does'
        " about it.</p>\n"
        f'<p class="versions">Pinned in constraints.txt: {versions}.</p>\n'
        f'<nav class="toc" aria-label="Sections"><ol>{toc}</ol></nav>\n</header>'
    )


def render(root: Path = ROOT) -> str:
    """The whole page, from the sources under root."""
    found = problems(root)
    if found:
        raise ValueError("the framework packages do not match common/contract.py:\n" + "\n".join(found))
    sources = read_sources(root)
    ledger = read_ledger(root)
    pins = pinned_versions(root)
    labels = {fw: version_label(fw, pins) for fw in FRAMEWORKS}
    sections = "\n".join(
        section_html(i, section, sources, ledger, labels) for i, section in enumerate(SECTIONS, start=1)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        "<title>triptych: PyTorch, TensorFlow and JAX side by side</title>\n"
        f"<style>\n{stylesheet(sources)}\n</style>\n</head>\n<body>\n{tabs_html(labels)}\n{header_html(labels)}\n"
        f"<main>\n{sections}\n{ledger_index_html(ledger)}\n</main>\n"
        f"<footer><p>Generated from <code>frameworks/*/{{{',<wbr>'.join(m.name for m in MODULES)}}}.py</code> and"
        f" <code>{LEDGER_PATH}</code> by <code>{COMMAND}</code> (<code>python -m common.sidebyside</code>);"
        " not edited by hand.</p></footer>\n</body>\n</html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.sidebyside", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {PAGE} is not what the sources give")
    parser.add_argument("--screenshot", action="store_true", help=f"write {SCREENSHOT} (needs Chromium)")
    args = parser.parse_args(argv)
    try:
        page = render(ROOT)
    except ValueError as exc:  # the packages broke the contract: say which function, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = ROOT / PAGE
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != page:
            print(f"{PAGE} is stale: run `{COMMAND}` and commit it", file=sys.stderr)
            return 1
        print(f"{PAGE} is up to date")
        return 0
    for line in installed_mismatches(pinned_versions(ROOT)):
        print(f"note: {line}", file=sys.stderr)
    target.write_text(page, encoding="utf-8")
    print(PAGE)
    if args.screenshot:
        from common.sidebyside.browser import chromium, screenshot_section

        with chromium() as browser:
            screenshot_section(browser, target, ROOT / SCREENSHOT)
        print(SCREENSHOT)
    return 0
