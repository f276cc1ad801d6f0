"""The three framework packages define the functions common/contract.py lists, read with ast (no framework needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from common.contract import (
    FORWARD_METHODS,
    FRAMEWORKS,
    LANDMARKS,
    LAYER_OUTPUTS,
    MNIST,
    MODULES,
    PLANE,
    Module,
    defined_names,
    module_problems,
    order_problems,
    problems,
)
from tests.conftest import ROOT

CASES = [(module, fw) for module in MODULES for fw in FRAMEWORKS]


def source(fw: str, module: str) -> str:
    return (ROOT / "frameworks" / fw / f"{module}.py").read_text()


@pytest.mark.parametrize(("module", "framework"), CASES, ids=[f"{fw}-{m.name}" for m, fw in CASES])
def test_each_file_defines_exactly_what_the_contract_lists(module: Module, framework: str) -> None:
    names = defined_names(source(framework, module.name))
    assert module_problems(module, framework, names) == []
    assert sorted(names) == sorted(module.expected(framework))


def test_the_whole_tree_has_no_problems() -> None:
    assert problems(ROOT) == []


def test_shared_functions_come_in_the_same_order_in_every_file() -> None:
    for module in MODULES:
        names = {fw: defined_names(source(fw, module.name)) for fw in FRAMEWORKS}
        assert order_problems(module, names) == [], module.name


def test_a_missing_function_fails_with_its_name() -> None:
    names = [n for n in defined_names(source("tensorflow", "mnist")) if n != "make_optimizer"]
    found = module_problems(MNIST, "tensorflow", names)
    assert found == ["frameworks/tensorflow/mnist.py does not define make_optimizer (common/contract.py)"]


def test_an_unlisted_or_misplaced_function_fails_with_its_name() -> None:
    names = [*defined_names(source("pytorch", "mnist")), "shard_batch", "max_pool"]
    found = module_problems(MNIST, "pytorch", names)
    assert len(found) == 2
    assert "defines shard_batch, which common/contract.py does not list" in found[0]
    assert "defines max_pool, which common/contract.py lists for other frameworks only" in found[1]


def test_a_reordered_file_fails_with_both_orders() -> None:
    names = {fw: defined_names(source(fw, "plane")) for fw in FRAMEWORKS}
    names["jax"] = ["abs_grad_at_zero", *[n for n in names["jax"] if n != "abs_grad_at_zero"]]
    (found,) = order_problems(PLANE, names)
    assert found.startswith("frameworks/jax/plane.py defines abs_grad_at_zero, loss_fn, fit_plane;")


def test_problems_reads_a_tree_on_disk(tmp_path: Path) -> None:
    """The generator and the test see the same thing: a function removed from a copy is reported."""
    for fw in FRAMEWORKS:
        for module in MODULES:
            target = tmp_path / "frameworks" / fw / f"{module.name}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source(fw, module.name))
    path = tmp_path / "frameworks" / "jax" / "plane.py"
    path.write_text(path.read_text().replace("def abs_grad_at_zero", "def abs_grad_at_origin"))
    assert problems(tmp_path) == [
        "frameworks/jax/plane.py does not define abs_grad_at_zero (common/contract.py)",
        "frameworks/jax/plane.py defines abs_grad_at_origin, which common/contract.py does not list: add it to"
        " PLANE (its stage, and which frameworks need it and why)",
    ]


def test_every_framework_specific_function_says_why() -> None:
    for module in MODULES:
        for fn in module.fns():
            assert set(fn.only) <= set(FRAMEWORKS), fn.name
            assert (fn.only == FRAMEWORKS) == (fn.why == ""), fn.name


def test_rows_hold_each_function_once() -> None:
    for module in MODULES:
        names = [fn.name for fn in module.fns()]
        assert len(names) == len(set(names)), module.name


def module_attributes_used(path: Path, module_names: set[str]) -> set[tuple[str, str]]:
    """(module, attribute) for every `mnist.X`-style use in a driver file."""
    tree = ast.parse(path.read_text())
    return {
        (node.value.id, node.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_names
    }


def test_the_drivers_call_only_functions_every_framework_defines() -> None:
    """The worker and the bench files reach the packages through the contract's shared names only."""
    shared = {m.name: {fn.name for fn in m.fns() if fn.only == FRAMEWORKS} for m in MODULES}
    drivers = [ROOT / "frameworks" / "worker.py", *(ROOT / "frameworks" / fw / "bench.py" for fw in FRAMEWORKS)]
    used = set().union(*(module_attributes_used(path, set(shared)) for path in drivers))
    assert {("mnist", "train"), ("plane", "fit_plane"), ("runtime", "configure"), ("parallel", "train")} <= used
    assert {(m, a) for m, a in used if a not in shared[m]} == set()


def class_methods(tree: ast.Module, name: str) -> list[str]:
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
    return [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_net_has_init_and_its_forward_method(framework: str) -> None:
    methods = class_methods(ast.parse(source(framework, "mnist")), "Net")
    assert methods == ["__init__", FORWARD_METHODS[framework], LAYER_OUTPUTS]


def landmarks_in(fn_source: str) -> list[str]:
    return [m for line in fn_source.splitlines() for m in LANDMARKS if line.strip().startswith(f"# {m}")]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_training_step_carries_the_landmarks_in_order(framework: str) -> None:
    """MNIST's train_step and the plane fit's step (wherever each framework writes it)."""
    for module, name in (("mnist", "train_step"), ("plane", "fit_plane" if framework != "jax" else "train_step")):
        text = source(framework, module)
        (node,) = [n for n in ast.parse(text).body if getattr(n, "name", None) == name]
        assert landmarks_in(ast.get_source_segment(text, node) or "") == list(LANDMARKS), (module, name)
