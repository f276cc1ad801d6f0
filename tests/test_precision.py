"""--precision bfloat16 and --compile: each framework's idiom, its dtypes, the refusals, the benchmark.

docs/mixed-precision.md lists which operations run in bfloat16 in each framework; the dtype tests
here show each of its rows. No timing is asserted: the benchmark checks the speed goals.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common import environment
from common.bench import cases, summary, tables
from common.config import BY_NAME, Framework, MnistConfig, RunConfig
from common.errors import UserError
from common.run import arguments
from common.weights import mnist_init
from tests.conftest import run_compare
from tests.test_bench import bench_doc, case, worker
from tests.test_cli import refused

MIXED = MnistConfig(precision="bfloat16")
LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc")
# Each layer's output dtype under --precision bfloat16 (docs/mixed-precision.md, "Which operations run in bfloat16").
BFLOAT16_EXCEPT_FC = {**dict.fromkeys(LAYERS[:-1], "bfloat16"), "fc": "float32"}
EXPECTED_LAYER_DTYPES = {
    "pytorch": dict.fromkeys(LAYERS, "bfloat16"),  # autocast: conv2d and linear in bfloat16, relu and pool follow
    "tensorflow": BFLOAT16_EXCEPT_FC,  # mixed_bfloat16 in every layer but the float32 output layer (Keras's guide)
    "jax": dict.fromkeys(LAYERS, "bfloat16"),  # dtype=bfloat16 in every module, the last included
}
# bfloat16 logits against float32 logits of the same weights, one batch: measured 2.5e-3 in all three
# (seed 0, batch 100, common.verdict.parity.BFLOAT16_VS_FLOAT32 = 0.03); here 8 images.
LOGITS_VS_FLOAT32 = 0.03
# Keras's bfloat16 convolutions run on oneDNN, which has none without AVX512_BF16 or AMX_BF16 (an AVX2-only CPU,
# or ONEDNN_MAX_CPU_ISA=AVX2): TensorFlow's bfloat16 is then not tested here (docs/mixed-precision.md).
NO_TF_BFLOAT16 = pytest.mark.skipif(
    not environment.onednn_bfloat16(), reason="oneDNN has no bfloat16 convolution on this CPU (AVX512_BF16 or AMX_BF16)"
)


def batch(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28), dtype=np.float32), np.arange(n) % 10


def dtype_name(value: Any) -> str:
    """'bfloat16' from torch.bfloat16, tf.bfloat16 or a NumPy/JAX dtype."""
    dtype = getattr(value, "dtype", value)
    return str(getattr(dtype, "name", dtype)).removeprefix("torch.")


def mixed_outputs(framework: str) -> tuple[dict[str, str], str, list[str]]:
    """Each layer's output dtype, the loss's dtype and the weights' dtypes of a bfloat16 model in `framework`."""
    mnist = importlib.import_module(f"frameworks.{framework}.mnist")
    model = mnist.create_model(MIXED, mnist_init(0), "cpu")
    x, y = mnist.to_device(*batch(), "cpu")
    if framework == "pytorch":  # autocast is a context around the forward pass, not part of the model
        with mnist.autocast(model, x):
            outputs = model.layer_outputs(x)
        weights = [p.dtype for p in model.parameters()]
    elif framework == "tensorflow":
        outputs = model.layer_outputs(x)
        weights = [v.dtype for v in model.trainable_variables]
    else:
        outputs = model.layer_outputs(x)
        weights = [getattr(model, n).kernel.value.dtype for n in ("conv1", "conv2", "fc")]
    loss, _ = mnist.loss_fn(model, x, y)
    return {k: dtype_name(v) for k, v in outputs.items()}, dtype_name(loss), [dtype_name(w) for w in weights]


@pytest.mark.parametrize(
    "framework",
    [
        pytest.param(f, marks=[getattr(pytest.mark, f), *([NO_TF_BFLOAT16] if f == "tensorflow" else [])])
        for f in ("pytorch", "tensorflow", "jax")
    ],
)
def test_which_layers_run_in_bfloat16(framework: str) -> None:
    layers, loss, weights = mixed_outputs(framework)
    assert layers == EXPECTED_LAYER_DTYPES[framework]
    assert loss == "float32"  # each framework's loss in float32: autocast's list, Keras's output layer, our cast in JAX
    assert set(weights) == {"float32"}  # mixed precision: the weights stay float32


@pytest.mark.parametrize(
    "framework",
    [
        pytest.param(f, marks=[getattr(pytest.mark, f), *([NO_TF_BFLOAT16] if f == "tensorflow" else [])])
        for f in ("pytorch", "tensorflow", "jax")
    ],
)
def test_bfloat16_probe_is_near_float32_and_not_equal(framework: str) -> None:
    """The probe reads bfloat16 outputs in float32, within bfloat16's rounding of the float32 logits."""
    mnist = importlib.import_module(f"frameworks.{framework}.mnist")
    images, labels = batch()
    full = mnist.probe(mnist.create_model(MnistConfig(), mnist_init(0), "cpu"), images, labels, "cpu")
    mixed = mnist.probe(mnist.create_model(MIXED, mnist_init(0), "cpu"), images, labels, "cpu")
    assert all(v.dtype == np.float32 for v in mixed.values())
    apart = np.abs(mixed["logits"] - full["logits"]).max()
    assert 0 < apart <= LOGITS_VS_FLOAT32  # not zero: the forward pass did run in bfloat16
    assert abs(float(mixed["loss"]) - float(full["loss"])) <= 1e-2 * float(full["loss"])
    x, _ = mnist.to_device(images, labels, "cpu")
    logits = mnist.predict(mnist.create_model(MIXED, mnist_init(0), "cpu"), x, 4)  # two batches of 4
    assert logits.dtype == np.float32 and np.abs(logits - mixed["logits"]).max() <= 1e-2


# --- The refusals: one line, exit 2 ---


def test_float16_on_a_cpu_is_refused() -> None:
    line = refused("--task", "mnist", "--device", "cpu", "--precision", "float16")
    assert line.startswith("error: --precision float16 runs on a GPU only")


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (("--precision", "bfloat8"), "error: --precision: unknown bfloat8; choose from float32, bfloat16, float16"),
        (("--precision", "float32,bfloat16"), "error: --precision takes one value without --benchmark"),
        (("--compile", "on"), "error: --compile applies to --benchmark only"),
        (("--benchmark", "--compile", "fast"), "error: --compile: unknown fast; choose from off, on"),
        (("--precision", "bfloat16", "--dtype", "float64"), "error: --precision bfloat16 keeps float32 weights"),
        (
            ("--precision", "bfloat16", "--devices", "2", "--device", "cpu"),
            "error: --precision bfloat16 is built for one device",
        ),
        (("--task", "plane", "--precision", "bfloat16"), "error: --precision applies to --task mnist"),
    ],
)
def test_precision_arguments_are_refused(args: tuple[str, ...], start: str) -> None:
    assert refused(*args).startswith(start)


def test_a_precision_a_framework_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU float16 passes the CPU check and meets the frameworks' lists: none builds it yet."""
    monkeypatch.setattr(environment, "gpu_visible", lambda: True)
    cfg = RunConfig(task="mnist", mnist=MnistConfig(precision="float16"))
    with pytest.raises(UserError, match=r"^--precision float16 is not built for pytorch, tensorflow, jax "):
        arguments.check_precision_runs(cfg)
    # A framework without bfloat16 is named alone, with what it does build.
    monkeypatch.setitem(BY_NAME, "jax", Framework("jax", "JAX", ("jax",), "Flax tutorial", ("float32",)))
    cfg = RunConfig(task="mnist", benchmark=True)
    cfg = replace(cfg, bench=replace(cfg.bench, precisions=("float32", "bfloat16")))
    with pytest.raises(UserError, match=r"^--precision bfloat16 is not built for jax \(.*\); choose from float32$"):
        arguments.check_precision_runs(cfg)


@pytest.mark.parametrize(
    ("flags", "cap", "lacking"),
    [
        ({"avx", "avx2"}, "", "this CPU has neither"),  # the AVX2-only AMD EPYC
        ({"avx", "avx512_bf16", "amx_bf16"}, "AVX2", "ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below them"),  # the Xeon
        ({"avx", "avx2", "avx512f", "avx512_bf16"}, "", ""),  # an AMD EPYC with AVX512_BF16
        ({"avx", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_AMX", ""),
        ({"asimd", "bf16"}, "", ""),  # not x86: not judged
    ],
)
def test_which_cpus_lack_onednn_bfloat16(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], cap: str, lacking: str
) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert environment.onednn_bfloat16_lacking(flags) == lacking


def test_tensorflow_bfloat16_on_a_cpu_without_onednn_bfloat16_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused up front in one line, naming the others, instead of TensorFlow failing at its first convolution."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(environment, "cpu_flags", lambda: {"sse4_2", "avx2", "avx512_bf16", "amx_bf16"})
    monkeypatch.setattr(environment, "gpu_visible", lambda: False)
    cfg = RunConfig(task="mnist", mnist=MnistConfig(precision="bfloat16"))
    with pytest.raises(UserError) as refusal:
        arguments.check_precision_runs(cfg)
    assert str(refusal.value) == (
        "--precision bfloat16: TensorFlow's bfloat16 convolutions run on oneDNN, which builds them only with"
        " AVX512_BF16 or AMX_BF16, and ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below them; leave it out"
        " (--frameworks pytorch,jax)"
    )
    arguments.check_precision_runs(replace(cfg, frameworks=("pytorch", "jax")))  # the others go on


@pytest.mark.skipif(not environment.cpu_flags() & {"avx"}, reason="oneDNN's bfloat16 is judged on x86 CPUs only")
def test_tensorflow_bfloat16_refusal_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # on any x86 CPU: it lacks them, or the cap hides them
    line = refused("--task", "mnist", "--precision", "bfloat16", "--frameworks", "tensorflow", "--device", "cpu")
    assert line.startswith("error: --precision bfloat16: TensorFlow's bfloat16 convolutions run on oneDNN")
    assert line.endswith("; leave it out (--frameworks pytorch,jax)")


# --- The benchmark's axes and its busy-machine line, on made-up numbers ---


def test_jax_stands_for_both_compile_settings() -> None:
    assert cases.worker_compiles("jax", ("off", "on")) == [("off", ("off", "on"))]
    assert cases.worker_compiles("pytorch", ("off", "on")) == [("off", ("off",)), ("on", ("on",))]


def busy_doc(load: float) -> dict[str, Any]:
    """Two frameworks, PyTorch's windows spread widely; every worker saw `load` as its 1-minute load average."""
    doc = bench_doc(repeats=1)
    doc["environment"] = {**doc["environment"], "cores": 2}
    doc["runs"] = [
        worker("pytorch", "fastest", 1, [case("project", 100, [20, 40, 60, 80])]),
        worker("tensorflow", "fastest", 1, [case("project", 100, [20, 21, 22, 23])]),
    ]
    for run in doc["runs"]:
        run["load_before"], run["load_after"] = load - 1, load
    return doc


def test_busy_machine_says_so_first() -> None:
    bench = summary.summarise(busy_doc(load=4.5))
    first = tables.table(bench).splitlines()[0]
    assert first.startswith("BUSY MACHINE: the 1-minute load average reached 4.5 on 2 cores")
    assert "do not rank the frameworks; most affected: pytorch (spread" in first
    assert first.index("pytorch") < first.index("tensorflow")  # the widest spread first
    assert tables.markdown_report(bench).startswith("**BUSY MACHINE:")


def test_a_quiet_machine_has_no_busy_line() -> None:
    bench = summary.summarise(busy_doc(load=1.9))  # below the 2 cores
    assert tables.busy_line(bench) is None
    assert tables.table(bench).startswith("MNIST CNN training step")


def test_precision_and_compile_rows_and_goals() -> None:
    """A bfloat16 and a compiled worker: their own rows and columns, the goals against float32 and eager."""
    doc = bench_doc(repeats=1)
    doc["runs"] = []
    for precision, compiled, ms in (("float32", "off", 20), ("bfloat16", "off", 10), ("float32", "on", 25)):
        run = worker("pytorch", "fastest", 1, [case("project", 100, [ms, ms + 1])])
        doc["runs"].append(run | {"precision": precision, "compile": compiled, "compile_stands_for": [compiled]})
    jax = worker("jax", "fastest", 1, [case("project", 100, [30, 31])])
    doc["runs"].append(jax | {"precision": "float32", "compile": "off", "compile_stands_for": ["off", "on"]})
    doc["config"]["frameworks"] = ["pytorch", "jax"]
    doc["environment"]["vector_extensions"] = ["AVX2", "AVX512F", "AVX512_BF16"]  # the goal's CPUs
    bench = summary.summarise(doc)
    keys = {(r["framework"], r["precision"], r["compile"]) for r in bench["rows"]}
    assert keys == {("pytorch", "float32", "off"), ("pytorch", "bfloat16", "off"), ("pytorch", "float32", "on")} | {
        ("jax", "float32", "off")
    }
    text = tables.table(bench)
    assert "precision" in text.splitlines()[2] and "compile" in text.splitlines()[2]
    assert "off = on" in text  # JAX's one worker stands for both
    goal = next(line for line in text.splitlines() if "pytorch bfloat16 >= 1.7x its float32" in line)
    assert goal.split()[-2:] == ["1.95x", "yes"]  # 20.5 / 10.5 ms
    goal = next(line for line in text.splitlines() if "torch.compile >= eager (float32)" in line)
    assert goal.split()[-2:] == ["0.80x", "no"]  # 20.5 / 25.5 ms
    fastest = max(bench["rows"], key=lambda r: r["images_per_second"])
    assert (fastest["precision"], fastest["relative_to_fastest"]) == ("bfloat16", 1.0)  # fastest may be bfloat16
    # Without AVX512_BF16 or AMX_BF16 bfloat16 is emulated on a CPU: the goal does not apply there.
    doc["environment"]["vector_extensions"] = ["AVX2"]
    goal = next(line for line in tables.table(summary.summarise(doc)).splitlines() if "its float32" in line)
    assert " 1.95x " in goal and goal.endswith(" n/a (the goal is for CPUs with AVX512_BF16 or AMX_BF16)")


# --- End to end, tiny ---


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
@NO_TF_BFLOAT16
def test_bfloat16_training_agrees(tmp_path: Path) -> None:
    """All three train in bfloat16 mixed precision; the float64 stages and the bfloat16 checks pass."""
    out = tmp_path / "bf16"
    args = ("--task", "mnist", "--precision", "bfloat16", "--epochs", "1", "--train-limit", "1000", "--quiet")
    proc = run_compare(*args, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["mnist"]["precision"] == "bfloat16"
    assert "bfloat16 mixed precision" in doc["parity"]["note"]
    names = [c["name"] for c in doc["parity"]["checks"]]
    for framework in ("pytorch", "tensorflow", "jax"):
        assert f"{framework}: initial logits, bfloat16 against float32: max abs difference" in names
        assert (out / "probes" / f"{framework}-float32.npz").is_file()
    assert all(stage["stage"] for stage in doc["parity"]["stages"])  # the float64 stages ran as always
    for run in doc["runs"]:
        assert run["test_accuracy"] >= 0.6, run  # 1,000 images, one epoch: 73-82% measured


@pytest.mark.slow
@pytest.mark.pytorch
@pytest.mark.tensorflow
@pytest.mark.jax
@NO_TF_BFLOAT16
def test_benchmark_precision_and_compile_axes(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ("--task", "mnist", "--benchmark", "--precision", "float32,bfloat16", "--compile", "off,on")
    tiny = ("--settings", "fastest", "--batch-size", "50", "--windows", "2", "--window-steps", "3")
    proc = run_compare(*args, *tiny, "--train-limit", "1000", "--quiet", "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = json.loads((out / "bench.json").read_text())
    rows = {(r["framework"], r["precision"], r["compile"]): r for r in bench["rows"]}
    expected = {
        (f, p, c) for f in ("pytorch", "tensorflow") for p in ("float32", "bfloat16") for c in ("off", "on")
    } | {("jax", p, "off") for p in ("float32", "bfloat16")}
    assert set(rows) == expected
    for key, r in rows.items():
        assert r["losses"][-1] < r["losses"][0], f"{key} did not learn: {r['losses']}"
    assert rows[("jax", "bfloat16", "off")]["compile_stands_for"] == ["off", "on"]
