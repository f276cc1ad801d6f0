"""The folder list is the architecture, read with ast (no framework needed).

common/'s top level is the shared layer: what every framework package and its worker may import.
Each subpackage of common/ is the driver's machinery (run/, verdict/, bench/, report/, sidebyside/),
which compare.py uses and no framework package and no shared module may import. A framework package
imports its own framework, never another's; common/ imports none (docs/adding-a-framework.md); and no
two modules of common/ import each other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.config import REGISTRY
from tests.conftest import ROOT

FRAMEWORK_OF = {module: f.name for f in REGISTRY for module in f.modules}  # 'torch' -> 'pytorch'


def driver_packages(root: Path) -> list[str]:
    """The subpackages of common/: the driver's machinery."""
    return sorted(p.parent.name for p in (root / "common").glob("*/__init__.py"))


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in a file, in functions too; `from a import b` gives 'a.b'."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's own package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"


FRAMEWORK_RULE = "a framework package imports only its framework and common's shared modules"
SHARED_RULE = "the shared layer (common/'s top level) never imports the driver"
OWN_RULE = "a framework package imports only its own"


def problem(root: Path, path: Path, line: int, dotted: str, drivers: list[str], owner: str | None) -> str | None:
    """What is wrong with one import of one file, or None; `owner`: the framework whose package holds the file."""
    where = f"{path.relative_to(root).as_posix()}:{line}: imports {dotted}"
    top, *rest = dotted.split(".")
    side = path.relative_to(root).parts[0]  # 'frameworks' or 'common'
    if top == "compare" or (top == "common" and rest and rest[0] in drivers):
        driver = "compare.py" if top == "compare" else f"common/{rest[0]}/"
        if side == "frameworks":
            return f"{where}, the driver's ({driver}): {FRAMEWORK_RULE}"
        return f"{where}, the driver's ({driver}): {SHARED_RULE}" if path.parent == root / "common" else None
    package = rest[0] if top == "frameworks" and rest and rest[0] in FRAMEWORK_OF.values() else None
    if side == "common" and (top in FRAMEWORK_OF or top == "frameworks"):
        return f"{where}: common/ never imports a framework"
    if top in FRAMEWORK_OF and FRAMEWORK_OF[top] != owner:
        return f"{where}, {FRAMEWORK_OF[top]}'s framework: {OWN_RULE}"
    if package and package != owner:
        return f"{where}, {package}'s package: {OWN_RULE}"
    return None


def layout_problems(root: Path) -> list[str]:
    """Every import under root/frameworks and root/common that crosses the layout, one line each."""
    drivers = driver_packages(root)
    found = []
    for path in sorted([*(root / "frameworks").rglob("*.py"), *(root / "common").rglob("*.py")]):
        relative = path.relative_to(root).parts
        owner = relative[1] if relative[0] == "frameworks" and len(relative) > 2 else None
        for line, dotted in imports(root, path):
            text = problem(root, path, line, dotted, drivers, owner)
            if text:
                found.append(text)
    return found


def test_the_tree_keeps_its_layout() -> None:
    assert layout_problems(ROOT) == []


def test_the_driver_is_the_subpackages_of_common_each_saying_what_it_decides() -> None:
    assert driver_packages(ROOT) == ["bench", "report", "run", "sidebyside", "verdict"]
    for name in driver_packages(ROOT):
        docstring = ast.get_docstring(ast.parse((ROOT / "common" / name / "__init__.py").read_text()))
        assert docstring, name


def test_the_check_reads_every_framework_file_and_the_worker() -> None:
    """So that an empty list above means something: the files it reads, and what it finds in the worker."""
    read = {module_name(ROOT, p) for p in (ROOT / "frameworks").rglob("*.py")}
    assert {"frameworks.worker", *(f"frameworks.{f.name}.mnist" for f in REGISTRY)} <= read
    worker = {dotted for _, dotted in imports(ROOT, ROOT / "frameworks" / "worker.py")}
    assert {"common.stages", "common.recorder.Recorder"} <= worker


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A small tree with common/run/ as its one driver subpackage, and the given files."""
    base = {"common/__init__.py": "", "common/run/__init__.py": '"""The driver."""\n', "common/run/launch.py": ""}
    for name, text in {**base, "frameworks/__init__.py": "", "frameworks/jax/__init__.py": "", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


ALLOWED = (
    "from common import timing\nfrom common.config import RunConfig\nimport jax\nfrom frameworks.jax import mnist\n"
)


@pytest.mark.parametrize(
    ("statement", "dotted"),
    [
        ("from common.run import launch", "common.run.launch"),
        ("import common.run.launch", "common.run.launch"),
        ("from common import run", "common.run"),
        ("from common.run.launch import run_all", "common.run.launch.run_all"),
        ("def f():\n    from common.run import launch", "common.run.launch"),
        ("import compare", "compare"),
    ],
)
def test_a_framework_module_importing_the_driver_fails_with_its_line(
    tmp_path: Path, statement: str, dotted: str
) -> None:
    root = tree(tmp_path, {"frameworks/jax/bench.py": ALLOWED + statement + "\n"})
    line = ALLOWED.count("\n") + statement.count("\n") + 1
    driver = "compare.py" if dotted == "compare" else "common/run/"
    assert layout_problems(root) == [
        f"frameworks/jax/bench.py:{line}: imports {dotted}, the driver's ({driver}): a framework package imports"
        " only its framework and common's shared modules"
    ]


def test_the_worker_importing_the_driver_fails_with_its_line(tmp_path: Path) -> None:
    root = tree(tmp_path, {"frameworks/worker.py": "from common import settings\nfrom common.run import launch\n"})
    assert layout_problems(root) == [
        "frameworks/worker.py:2: imports common.run.launch, the driver's (common/run/): a framework package imports"
        " only its framework and common's shared modules"
    ]


def test_a_shared_module_importing_the_driver_fails_with_its_line(tmp_path: Path) -> None:
    root = tree(tmp_path, {"common/data.py": "import numpy as np\n\nfrom common.run.launch import run_all\n"})
    assert layout_problems(root) == [
        "common/data.py:3: imports common.run.launch.run_all, the driver's (common/run/): the shared layer"
        " (common/'s top level) never imports the driver"
    ]


def test_another_framework_or_a_framework_in_common_fails_with_its_line(tmp_path: Path) -> None:
    files = {
        "frameworks/jax/mnist.py": "import jax\nimport torch\nfrom ..pytorch import mnist\n",
        "common/run/launch.py": "def f():\n    import jax\n",
    }
    assert layout_problems(tree(tmp_path, files)) == [
        "common/run/launch.py:2: imports jax: common/ never imports a framework",
        "frameworks/jax/mnist.py:2: imports torch, pytorch's framework: a framework package imports only its own",
        "frameworks/jax/mnist.py:3: imports frameworks.pytorch.mnist, pytorch's package: a framework package"
        " imports only its own",
    ]


def test_the_driver_may_import_the_shared_layer_and_itself(tmp_path: Path) -> None:
    files = {
        "common/run/launch.py": "from common import config\nfrom common.run import cluster\nfrom . import cluster\n",
        "frameworks/jax/bench.py": ALLOWED + "from . import mnist\n",
    }
    assert layout_problems(tree(tmp_path, files)) == []


def resolve(root: Path, dotted: str) -> str | None:
    """The module a dotted import name lands in (its longest prefix that is a file), or None outside root."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:n])
    return None


def import_loops(root: Path) -> list[list[str]]:
    """Groups of common's modules that import each other, directly or round a loop (imports in functions too)."""
    graph: dict[str, set[str]] = {}
    for path in (root / "common").rglob("*.py"):
        name = module_name(root, path)
        targets = {resolve(root, dotted) for _, dotted in imports(root, path)}
        graph[name] = {t for t in targets if t and t != name and t != "common" and t.startswith("common.")}
    reach = {name: reachable(graph, name) for name in graph}
    loops = {tuple(sorted(n for n in graph if n in reach[name] and name in reach[n])) for name in graph}
    return sorted(list(loop) for loop in loops if loop)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, ())
    return seen


def test_no_modules_of_common_import_each_other() -> None:
    assert import_loops(ROOT) == []


def test_an_import_loop_is_named(tmp_path: Path) -> None:
    """plots.py and seedplots.py once imported each other (seedplots at call time); both now read style.py."""
    files = {
        "common/report/__init__.py": "",
        "common/report/plots.py": "def f():\n    from common.report.seedplots import figure\n",
        "common/report/seedplots.py": "from common.report.plots import style\n",
    }
    assert import_loops(tree(tmp_path, files)) == [["common.report.plots", "common.report.seedplots"]]
