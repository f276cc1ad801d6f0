"""The porting-bug catalogue (docs/porting-bugs.md): each classic bug, written into one framework, fails
the verdict at the stage that catches it, naming that framework, the stage and where.

Each bug is patched into one framework's module (monkeypatch, or an edit of its source: `edited`), that
framework's float64 stages are computed as a worker computes them (frameworks/worker.py, run_stages)
and its loop's record from a short training run of its own mnist.train (the run in miniature: three
epochs of ten steps), and the verdict is built from them and the other two frameworks' correct ones
exactly as compare.py builds it. Three bugs go through compare.py itself, in a patched copy of the
project: one in the default run, two in data-parallel runs.

Beside the bugs, the controls: refactors that compute the same function (an in-place ReLU, another
pooling primitive, a summed loss divided by the batch size, ...), each of which must agree.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from common import layout, loop, stages
from common.config import FRAMEWORKS, MnistConfig, RunConfig
from common.data import Mnist, batch_order
from common.recorder import Recorder
from common.verdict import parity
from common.weights import mnist_init
from tests.conftest import ROOT, load_results

pytestmark = [pytest.mark.slow, pytest.mark.pytorch, pytest.mark.tensorflow, pytest.mark.jax]

# Small and quick: ten float64 steps of 20 examples (the stages' own STEPS), seed 0.
MNIST = {
    "sgd": MnistConfig(train_limit=1000, batch_size=20),
    "adam": MnistConfig(train_limit=1000, batch_size=20, optimizer="adam", lr=0.001),
}


def module(framework: str, name: str = "mnist"):
    return importlib.import_module(f"frameworks.{framework}.{name}")


# The run in miniature whose loop is recorded: three epochs of ten steps (two epoch boundaries), in float32, a
# test set of 500 images; 210 examples, so each epoch leaves a partial batch of 10 that the recipe drops.
RUN = {optimizer: replace(m, train_limit=210, epochs=3) for optimizer, m in MNIST.items()}
TEST_IMAGES = 500


def run_stages(framework: str, optimizer: str) -> dict[str, np.ndarray]:
    """The framework's float64 stages, as its worker computes them, and its loop's record (loop/...)."""
    from frameworks import worker

    cfg = RunConfig(task="mnist", mnist=MNIST[optimizer], out="unused")
    return worker.run_stages(cfg, importlib.import_module(f"frameworks.{framework}"), "cpu") | run_loop(
        framework, optimizer
    )


def run_loop(framework: str, optimizer: str) -> dict[str, np.ndarray]:
    """The loop's record of a short float32 run of the framework's own mnist.train (RUN), as loop/... keys."""
    from frameworks import worker

    cfg = RunConfig(task="mnist", mnist=RUN[optimizer], out="unused")
    full = worker.load_data(cfg)
    data = Mnist(full.train_images, full.train_labels, full.test_images[:TEST_IMAGES], full.test_labels[:TEST_IMAGES])
    mnist = module(framework)
    model = mnist.create_model(cfg.mnist, mnist_init(cfg.seed), "cpu")
    steps = len(data.train_labels) // cfg.mnist.batch_size
    recorder = Recorder(framework, data.test_labels, cfg.mnist.epochs, steps, cfg.mnist.batch_size, quiet=True)
    mnist.train(cfg, model, data, recorder, "cpu")
    return {f"loop/{k}": v for k, v in recorder.loop().items()}


@pytest.fixture(scope="module")
def correct() -> Callable[[str, str], dict[str, np.ndarray]]:
    """Each framework's correct stages and loop record, computed once per optimizer."""
    return functools.cache(run_stages)


def edited(framework: str, edits: dict[str, str], name: str = "mnist") -> Callable[[pytest.MonkeyPatch], None]:
    """The framework's module with its source edited (each old text, found once, by its new one), in place of the
    module: the bug, or the control, as a port would write it."""

    def patch(mp: pytest.MonkeyPatch) -> None:
        path = ROOT / "frameworks" / framework / f"{name}.py"
        source = path.read_text()
        for old, new in edits.items():
            assert source.count(old) == 1, old
            source = source.replace(old, new)
        real = module(framework, name)  # imported first, so that undoing the patch puts it back
        copy = types.ModuleType(real.__name__)
        copy.__file__ = str(path)
        mp.setitem(sys.modules, copy.__name__, copy)  # dataclasses and Keras look their module up here
        exec(compile(source, str(path), "exec"), copy.__dict__)
        mp.setattr(importlib.import_module(f"frameworks.{framework}"), name, copy)

    return patch


# --- The bugs, each as one framework would be written with it ---


def fc_rows_not_permuted(mp: pytest.MonkeyPatch) -> None:
    """Keras: fc's weights transposed, but not regrouped from PyTorch's C, H, W flatten to NHWC's H, W, C."""

    def to_nhwc(params: dict[str, np.ndarray]) -> dict:
        return {**layout.to_nhwc(params), "fc": (np.ascontiguousarray(params["fc.weight"].T), params["fc.bias"])}

    mp.setattr(module("tensorflow"), "to_nhwc", to_nhwc)


def conv_kernel_h_w_swapped(mp: pytest.MonkeyPatch) -> None:
    """Flax: conv1's kernel moved from OIHW with transpose(3, 2, 1, 0) instead of (2, 3, 1, 0): H and W swapped."""

    def to_nhwc(params: dict[str, np.ndarray]) -> dict:
        kernel = np.ascontiguousarray(params["conv1.weight"].transpose(3, 2, 1, 0))
        return {**layout.to_nhwc(params), "conv1": (kernel, params["conv1.bias"])}

    mp.setattr(module("jax"), "to_nhwc", to_nhwc)


def flatten_c_h_w(mp: pytest.MonkeyPatch) -> None:
    """Flax: the NHWC map flattened in PyTorch's C, H, W order, while fc's rows were loaded for H, W, C."""
    net = module("jax").Net
    original = net.layer_outputs

    def layer_outputs(self, x):
        out = original(self, x)
        out["flatten"] = out["pool2"].transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        out["fc"] = self.fc(out["flatten"])
        return out

    mp.setattr(net, "layer_outputs", layer_outputs)


def probabilities_not_logits(mp: pytest.MonkeyPatch) -> None:
    """Keras: the cross-entropy without from_logits=True, which defaults to False: the logits read as probabilities."""
    import tensorflow as tf

    def loss_fn(model, x, y):
        logits = model(x, training=True)
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits)), logits

    mp.setattr(module("tensorflow"), "loss_fn", loss_fn)


def label_smoothing(mp: pytest.MonkeyPatch) -> None:
    """PyTorch: label_smoothing=0.1 carried over from another recipe."""
    import torch.nn.functional as F

    def loss_fn(model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=0.1), logits

    mp.setattr(module("pytorch"), "loss_fn", loss_fn)


def sum_not_mean(mp: pytest.MonkeyPatch) -> None:
    """Optax: the per-example losses summed instead of averaged."""
    import optax

    def loss_fn(model, x, y):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(), logits

    mp.setattr(module("jax"), "loss_fn", loss_fn)


def layer_cut_from_backprop(mp: pytest.MonkeyPatch) -> None:
    """JAX: conv1's output wrapped in stop_gradient (a frozen layer): the loss is right, conv1 never learns."""
    import jax

    jax_mnist = module("jax")
    original = jax_mnist.Net.layer_outputs

    def layer_outputs(self, x):
        out = original(self, x)
        out["relu1"] = jax_mnist.nnx.relu(jax.lax.stop_gradient(out["conv1"]))
        out["pool1"] = jax_mnist.max_pool(out["relu1"])
        out["conv2"] = self.conv2(out["pool1"])
        out["relu2"] = jax_mnist.nnx.relu(out["conv2"])
        out["pool2"] = jax_mnist.max_pool(out["relu2"])
        out["flatten"] = out["pool2"].reshape(x.shape[0], -1)
        out["fc"] = self.fc(out["flatten"])
        return out

    mp.setattr(jax_mnist.Net, "layer_outputs", layer_outputs)


def torch_sgd(**changes: object) -> Callable[[pytest.MonkeyPatch], None]:
    """PyTorch's SGD with one of its constants changed from the shared recipe."""

    def patch(mp: pytest.MonkeyPatch) -> None:
        import torch

        def make_optimizer(cfg: MnistConfig, model):
            settings = {"lr": cfg.lr, "momentum": cfg.momentum, "dampening": 0.0, "nesterov": False, **changes}
            return torch.optim.SGD(model.parameters(), **settings)

        mp.setattr(module("pytorch"), "make_optimizer", make_optimizer)

    return patch


def optax_weight_decay(mp: pytest.MonkeyPatch) -> None:
    """Optax: weight decay 5e-4 added to SGD, as another recipe had it."""
    import optax
    from flax import nnx

    def sgd_with_decay(learning_rate: float, momentum: float) -> optax.GradientTransformation:
        return optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(learning_rate, momentum=momentum))

    def make_optimizer(cfg: MnistConfig, model):
        tx = optax.inject_hyperparams(sgd_with_decay)(learning_rate=cfg.lr, momentum=cfg.momentum)
        return nnx.Optimizer(model, tx, wrt=nnx.Param)

    mp.setattr(module("jax"), "make_optimizer", make_optimizer)


def keras_default_epsilon(mp: pytest.MonkeyPatch) -> None:
    """Keras: Adam's epsilon left at Keras's default 1e-7 instead of the shared 1e-8."""
    tf_mnist = module("tensorflow")
    original = tf_mnist.make_optimizer

    def make_optimizer(cfg: MnistConfig, model):
        return original(replace(cfg, eps=1e-7), model)

    mp.setattr(tf_mnist, "make_optimizer", make_optimizer)


def keras_epsilon_hat(mp: pytest.MonkeyPatch) -> None:
    """Keras: Adam's epsilon added where Keras adds it, before bias correction (no per-step epsilon)."""
    mp.setattr(module("tensorflow"), "adam_epsilon", lambda optimizer: None)


def optax_epsilon_in_sqrt(mp: pytest.MonkeyPatch) -> None:
    """Optax: Adam's epsilon inside the square root (eps_root) instead of added to it (eps)."""
    import optax
    from flax import nnx

    def make_optimizer(cfg: MnistConfig, model):
        tx = optax.inject_hyperparams(optax.adam)(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=0.0, eps_root=cfg.eps)
        return nnx.Optimizer(model, tx, wrt=nnx.Param)

    mp.setattr(module("jax"), "make_optimizer", make_optimizer)


def torch_amsgrad(mp: pytest.MonkeyPatch) -> None:
    """PyTorch: Adam with amsgrad=True."""
    import torch

    def make_optimizer(cfg: MnistConfig, model):
        betas = (cfg.beta1, cfg.beta2)
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=betas, eps=cfg.eps, amsgrad=True)

    mp.setattr(module("pytorch"), "make_optimizer", make_optimizer)


def keras_python_float_momentum(mp: pytest.MonkeyPatch) -> None:
    """Keras: momentum passed as a Python float, which Keras casts through float32 (0.8999999762)."""
    import tensorflow as tf

    def make_optimizer(cfg: MnistConfig, model):
        optimizer = tf.keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum)
        optimizer.build(model.trainable_variables)
        return optimizer

    mp.setattr(module("tensorflow"), "make_optimizer", make_optimizer)


def keras_float32_learning_rate(mp: pytest.MonkeyPatch) -> None:
    """Keras: floatx() left at float32, so the learning-rate variable of the float64 model is float32."""
    mp.setattr(module("tensorflow", "runtime"), "float64", contextlib.nullcontext)


def no_zero_grad(mp: pytest.MonkeyPatch) -> None:
    """PyTorch: optimizer.zero_grad() left out, so each step's gradients add to the last ones."""
    torch_mnist = module("pytorch")

    def train_step(model, optimizer, x, y, idx):
        x, y = x[idx], y[idx]
        loss, _ = torch_mnist.loss_fn(model, x, y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    mp.setattr(torch_mnist, "train_step", train_step)


def reversed_batches(mp: pytest.MonkeyPatch) -> None:
    """JAX: the epoch's batches taken in reverse order."""
    mp.setattr(module("jax"), "batch_order", lambda *args, **kw: batch_order(*args, **kw)[::-1])


def softmax_in_predict(mp: pytest.MonkeyPatch) -> None:
    """Keras: predict returns probabilities (a softmax on top), not logits."""
    import tensorflow as tf

    tf_mnist = module("tensorflow")

    def predict(model, x, batch_size):
        rows = range(0, len(x), batch_size)
        return np.concatenate([tf.nn.softmax(tf_mnist.forward(model, x[i : i + batch_size])).numpy() for i in rows])

    mp.setattr(tf_mnist, "predict", predict)


def shuffled_test_batches(mp: pytest.MonkeyPatch) -> None:
    """PyTorch: the test batches scored in another order (a test DataLoader with shuffle=True)."""
    import torch

    def predict(model, x, batch_size):
        with torch.no_grad():
            rows = reversed(range(0, len(x), batch_size))
            return torch.cat([model(x[i : i + batch_size]) for i in rows]).numpy()

    mp.setattr(module("pytorch"), "predict", predict)


# --- Bugs that act only after the first steps: at an epoch boundary, at a later step ---

EPOCH_LOOP = (
    "    for epoch in range(m.epochs):\n        order = batch_order(len(y_train), m.batch_size, cfg.seed, epoch)\n"
)
EPOCH_ORDER = "        order = batch_order(len(y_train), m.batch_size, cfg.seed, epoch)\n"
EPOCH_END = "        recorder.epoch(seconds, predict(model, x_test, m.eval_batch_size))\n"
OPTIMIZER = "    optimizer = make_optimizer(m, model)\n"

# JAX: every epoch takes epoch 0's order (the PRNG key never split, DistributedSampler.set_epoch never called).
epoch_order_reused = edited("jax", {EPOCH_ORDER: EPOCH_ORDER.replace("cfg.seed, epoch)", "cfg.seed, 0)")})
# Keras: the order drawn once before the epochs, so never reshuffled (tensorflow/tensorflow#29558).
shuffled_once = edited(
    "tensorflow",
    {
        EPOCH_LOOP: "    order = batch_order(len(y_train), m.batch_size, cfg.seed, 0)\n"
        "    for epoch in range(m.epochs):\n"
    },
)
# PyTorch: the optimizer made anew at the top of every epoch, so momentum starts from zero again.
optimizer_per_epoch = edited(
    "pytorch", {EPOCH_LOOP: EPOCH_LOOP.replace(":\n", ":\n        optimizer = make_optimizer(m, model)\n", 1)}
)
# Keras: Adam's step count reset every epoch, as re-compiling the model does (keras-team/keras#13750).
adam_count_reset = edited(
    "tensorflow", {EPOCH_LOOP: EPOCH_LOOP.replace(":\n", ":\n        optimizer.iterations.assign(0)\n", 1)}
)
# PyTorch: pytorch/examples' StepLR(step_size=1, gamma=0.7), stepped after each epoch.
step_lr = edited(
    "pytorch",
    {
        OPTIMIZER: OPTIMIZER + "    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)\n",
        EPOCH_END: EPOCH_END + "        scheduler.step()\n",
    },
)
# Keras: a learning-rate schedule whose boundary falls inside an epoch (after step 15 here).
schedule_mid_epoch = edited(
    "tensorflow",
    {
        "SGD(learning_rate=cfg.lr,": "SGD(\n            learning_rate=tf.keras.optimizers.schedules."
        "PiecewiseConstantDecay([14], [cfg.lr, cfg.lr / 10]),"
    },
)
# JAX: a hand-written loader that keeps the last, partial batch (drop_last=False); the recipe drops it.
partial_batch_kept = edited(
    "jax",
    {
        EPOCH_ORDER: "        perm = np.random.default_rng([cfg.seed, epoch]).permutation(len(y_train))\n"
        "        order = [perm[i : i + m.batch_size] for i in range(0, len(perm), m.batch_size)]\n"
    },
)


def test_a_dropped_last_batch_is_named_not_a_traceback() -> None:
    """A predict that stops before the last, partial batch (drop_last=True) cannot be scored: one clear line."""
    from common.recorder import Recorder

    recorder = Recorder("pytorch", np.zeros(500, dtype=np.int64), 1, 10, 20, quiet=True)
    with pytest.raises(ValueError, match=r"^predict returned 400 rows of logits for 500 test images$"):
        recorder.epoch(1.0, np.zeros((400, 10)))


@dataclass(frozen=True)
class Bug:
    name: str
    framework: str
    patch: Callable[[pytest.MonkeyPatch], None]
    stage: str
    where: str  # where the verdict says the framework parts (its start)
    optimizer: str = "sgd"


CATALOGUE = (
    Bug("fc rows not permuted", "tensorflow", fc_rows_not_permuted, "forward", "fc"),
    Bug("conv kernel H and W swapped", "jax", conv_kernel_h_w_swapped, "forward", "conv1"),
    Bug("flatten in C, H, W order", "jax", flatten_c_h_w, "forward", "flatten"),
    Bug("probabilities for logits", "tensorflow", probabilities_not_logits, "loss", "loss"),
    Bug("label smoothing", "pytorch", label_smoothing, "loss", "loss"),
    Bug("sum for mean", "jax", sum_not_mean, "loss", "loss"),
    Bug("layer cut from backprop", "jax", layer_cut_from_backprop, "gradients", "conv1.bias"),
    Bug(
        "SGD without momentum",
        "pytorch",
        torch_sgd(momentum=0.0),
        "loop",
        "step 1 (epoch 1, step 1): another momentum (0.0 against 0.9)",
    ),
    Bug("SGD dampening", "pytorch", torch_sgd(dampening=0.1), "update", "step 3 (epoch 1, step 3)"),
    Bug("SGD Nesterov", "pytorch", torch_sgd(nesterov=True), "update", "step 2 (epoch 1, step 2)"),
    Bug("weight decay", "jax", optax_weight_decay, "update", "step 2 (epoch 1, step 2)"),
    Bug("Keras's default Adam epsilon", "tensorflow", keras_default_epsilon, "update", "step 2 ", "adam"),
    Bug("Keras's epsilon hat", "tensorflow", keras_epsilon_hat, "update", "step 2 ", "adam"),
    Bug("Adam epsilon inside the square root", "jax", optax_epsilon_in_sqrt, "update", "step 2 ", "adam"),
    Bug("AMSGrad", "pytorch", torch_amsgrad, "update", "step", "adam"),
    Bug("Python-float momentum in Keras", "tensorflow", keras_python_float_momentum, "update", "step 3 "),
    Bug("float32 learning rate in Keras", "tensorflow", keras_float32_learning_rate, "update", "step 2 "),
    Bug("no zero_grad", "pytorch", no_zero_grad, "update", "step 3 "),
    Bug("batches in reverse order", "jax", reversed_batches, "loop", "step 1 (epoch 1, step 1): another batch"),
    Bug("softmax in predict", "tensorflow", softmax_in_predict, "evaluation", "logits"),
    Bug("test batches shuffled", "pytorch", shuffled_test_batches, "evaluation", "logits"),
)
LATE = (
    Bug("epoch 0's order every epoch", "jax", epoch_order_reused, "loop", "step 11 (epoch 2, step 1): another batch"),
    Bug("shuffled once", "tensorflow", shuffled_once, "loop", "step 11 (epoch 2, step 1): another batch"),
    Bug("optimizer made anew every epoch", "pytorch", optimizer_per_epoch, "update", "step 12 (epoch 2, step 2)"),
    Bug(
        "Adam's count reset every epoch", "tensorflow", adam_count_reset, "update", "step 12 (epoch 2, step 2)", "adam"
    ),
    Bug(
        "StepLR after each epoch",
        "pytorch",
        step_lr,
        "loop",
        "step 11 (epoch 2, step 1): another learning rate (0.014 against 0.02)",
    ),
    Bug(
        "a schedule inside an epoch",
        "tensorflow",
        schedule_mid_epoch,
        "loop",
        "step 16 (epoch 2, step 6): another learning rate (0.002 against 0.02)",
    ),
    Bug("the last partial batch kept", "jax", partial_batch_kept, "loop", "step 11 (epoch 1, step 11): another"),
)


@contextlib.contextmanager
def jit_traced_anew(framework: str) -> Iterator[None]:
    """JAX's jitted step was traced with the module's functions as they were: trace it again, in and after."""
    if framework == "jax":
        import jax

        jax.clear_caches()
    try:
        yield
    finally:
        if framework == "jax":
            jax.clear_caches()


def verdict(tmp_path: Path, records: dict[str, dict[str, np.ndarray]], optimizer: str) -> dict:
    """The verdict compare.py gives on these stages and loops (the stage checks of mnist_parity)."""
    for folder in ("stages", "loops"):
        (tmp_path / folder).mkdir(exist_ok=True)
    for name, arrays in records.items():
        np.savez(tmp_path / "stages" / f"{name}.npz", **{k: v for k, v in arrays.items() if not k.startswith("loop/")})
        np.savez(tmp_path / "loops" / f"{name}.npz", **stages.loop_record(arrays))
    runs = [{"framework": name, "status": "ok"} for name in records]
    table = parity.stage_table(tmp_path, runs, optimizer, loop.expected(RUN[optimizer], 0))
    return parity.with_stages(parity.verdict(parity.stage_checks(table), runs), table)


@pytest.mark.parametrize("bug", CATALOGUE + LATE, ids=[bug.name for bug in CATALOGUE + LATE])
def test_each_bug_fails_the_verdict_at_its_stage(
    bug: Bug, correct: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The framework with the bug parts from the other two at the bug's stage, and every stage before agrees."""
    with monkeypatch.context() as mp:
        bug.patch(mp)
        with jit_traced_anew(bug.framework):
            buggy = run_stages(bug.framework, bug.optimizer)
    others = [f for f in FRAMEWORKS if f != bug.framework]
    records = {f: correct(f, bug.optimizer) for f in others} | {bug.framework: buggy}
    result = verdict(tmp_path, records, bug.optimizer)
    headline = parity.headline(result)
    print(headline)
    against = stages.join([*others, *([loop.RECIPE] if bug.stage == "loop" else [])])  # the loop's own reference
    expected = f"DISAGREE at {stages.LABELS[bug.stage]}: {bug.framework} parts from {against} at "
    assert headline.startswith(expected + bug.where), headline
    earlier = stages.STAGES[: stages.STAGES.index(bug.stage)]
    assert [s["stage"] for s in result["stages"] if s["passed"]][: len(earlier)] == list(earlier)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_correct_code_agrees_in_every_stage(optimizer: str, correct: Callable, tmp_path: Path) -> None:
    """The catalogue's baseline: the three frameworks as written agree at every stage, well inside each tolerance
    (measured: SGD <= 2e-14 on the Xeon and the AMD EPYC; Adam 1.1e-13 at its update on the EPYC, whose
    tolerance is its own 1e-10: stages.ADAM_UPDATE)."""
    result = verdict(tmp_path, {f: correct(f, optimizer) for f in FRAMEWORKS}, optimizer)
    assert result["status"] == parity.AGREE
    assert all(c["value"] <= c["tolerance"] / 5 for c in result["checks"]), result["checks"]  # the loop: 0 of 0


# --- Through compare.py: a patched copy of the project ---


def patched_copy(tmp_path: Path, file: str, edits: dict[str, str]) -> Path:
    """The tracked files of this checkout in tmp_path/project, `file` edited (each old text, found once, by its new)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "project"
    for name in files:
        if name.endswith((".py", ".css")):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    text = (copy / file).read_text()
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (copy / file).write_text(text)
    return copy


def compare_in(copy: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = copy / "run"
    cmd = [sys.executable, str(copy / "compare.py"), "--quiet", *args, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=copy, capture_output=True, text=True, timeout=900)
    return proc, load_results(out)


def test_step_lr_in_pytorch_fails_the_default_verdict_at_the_loop(tmp_path: Path) -> None:
    """pytorch/examples' StepLR, stepped after each epoch: the loop names the step, and the learning rate it took;
    the float64 update stage parts at the same boundary."""
    edits = {
        OPTIMIZER: OPTIMIZER + "    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)\n",
        EPOCH_END: EPOCH_END + "        scheduler.step()\n",
    }
    copy = patched_copy(tmp_path, "frameworks/pytorch/mnist.py", edits)
    proc, doc = compare_in(copy, "--frameworks", "pytorch,jax", *TINY[:2], "--epochs", "2", *TINY[4:])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (  # two frameworks, yet the recipe says which loop left it
        "DISAGREE at the loop: pytorch parts from jax and the recipe at step 11 (epoch 2, step 1):"
        " another learning rate (0.014 against 0.02) (forward pass, loss and gradients agree)"
    ) in proc.stdout
    table = {s["stage"]: s for s in doc["parity"]["stages"]}
    assert table["loop"]["pairs"]["pytorch vs jax"]["value"] == 10  # every step of the second epoch
    assert list(table["loop"]["recipe"]) == ["pytorch"]
    assert [s["stage"] for s in doc["parity"]["stages"] if not s["passed"]] == ["loop", "update", "evaluation"]


@pytest.mark.distributed
def test_per_replica_mean_fails_the_data_parallel_check(tmp_path: Path) -> None:
    """MirroredStrategy sums the replicas' gradients: each replica's own mean makes the step N times too large."""
    copy = patched_copy(
        tmp_path,
        "frameworks/tensorflow/parallel.py",
        {"tf.nn.compute_average_loss(losses), logits": "tf.reduce_mean(losses), logits"},
    )
    proc, doc = compare_in(copy, "--frameworks", "pytorch,tensorflow", "--devices", "2", "--device", "cpu", *TINY)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in doc["parity"]["checks"]}
    engine = {name: c["passed"] for name, c in checks.items() if ": 2 devices vs one, " in name}
    assert engine and all(passed != name.startswith("tensorflow") for name, passed in engine.items()), engine
    assert all(s["passed"] for s in doc["parity"]["stages"])  # one device each: the port is right there
    headline = (
        "DISAGREE: tensorflow: 2 devices vs one, the update stage's 20 step losses (float64): relative difference"
    )
    # Each replica's mean, summed: the step's recorded loss is twice the mean from step 1 on.
    assert f"{headline} (parts at step 1 (epoch 1, step 1) by 1); the float64 stages agree" in proc.stdout


@pytest.mark.distributed
def test_a_data_parallel_loop_without_the_epoch_fails_at_the_loop(tmp_path: Path) -> None:
    """JAX's data-parallel loop draws epoch 0's order every epoch (DistributedSampler.set_epoch never called):
    the loop names the first step of the second epoch, and the engine parts from one device there too."""
    order = "order = batch_order(len(data.train_labels), m.batch_size, cfg.seed, epoch)"
    copy = patched_copy(tmp_path, "frameworks/jax/parallel.py", {order: order.replace("epoch)", "0)")})
    proc, doc = compare_in(
        copy,
        "--frameworks",
        "tensorflow,jax",
        "--devices",
        "2",
        "--device",
        "cpu",
        *TINY[:2],
        "--epochs",
        "2",
        *TINY[4:],
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "DISAGREE at the loop: jax parts from tensorflow and the recipe at step 11 (epoch 2, step 1): another batch"
    ) in proc.stdout
    checks = {c["name"]: c for c in doc["parity"]["checks"]}
    engine = checks["jax: 2 devices vs one, the update stage's 20 step losses (float64): relative difference"]
    assert not engine["passed"] and engine["detail"].startswith("parts at step 11 (epoch 2, step 1) by ")


TINY = ("--train-limit", "600", "--epochs", "1", "--batch-size", "60")


# --- Controls: refactors that compute the same function, each of which must agree ---

RELU = 'out["relu{n}"] = F.relu(out["conv{n}"])'
POOL = 'out["pool{n}"] = max_pool(out["relu{n}"])'
CONTROLS = {
    # torchvision's models write their activations in place; the stage observed conv1 before relu1 overwrote it.
    "in-place ReLU (PyTorch)": (
        "pytorch",
        {RELU.format(n=n): RELU.format(n=n)[:-1] + ", inplace=True)" for n in (1, 2)},
    ),
    "flatten by reshape (PyTorch)": (
        "pytorch",
        {'torch.flatten(out["pool2"], start_dim=1)': 'out["pool2"].reshape(x.shape[0], -1)'},
    ),
    # Keras users write the activation into the layer; conv1's output is then already rectified.
    "ReLU fused into Conv2D (Keras)": (
        "tensorflow",
        {
            'Conv2D(24, 5, padding="same", dtype=policy)': 'Conv2D(24, 5, padding="same", activation="relu",'
            " dtype=policy)"
        },
    ),
    "training=True in predict (Keras)": (
        "tensorflow",
        {"return model(x, training=False)": "return model(x, training=True)"},
    ),
    "nnx.max_pool for the reshape-max (Flax)": (
        "jax",
        {
            POOL.format(n=n): POOL.format(n=n).replace("= max_pool(", "= nnx.max_pool(")[:-1]
            + ", (2, 2), strides=(2, 2))"
            for n in (1, 2)
        },
    ),
    "summed loss divided by the batch (Optax)": (
        "jax",
        {"with_integer_labels(logits, y).mean()": "with_integer_labels(logits, y).sum() / y.shape[0]"},
    ),
}


def probes(framework: str, dtype: str) -> dict[str, np.ndarray]:
    """The framework's first-step probe from the shared start on the run's first batch, as its worker saves it."""
    from frameworks import worker

    cfg = RunConfig(task="mnist", mnist=replace(MNIST["sgd"], dtype=dtype), out="unused")
    data = worker.load_data(cfg)
    first = batch_order(len(data.train_labels), cfg.mnist.batch_size, cfg.seed, 0)[0]
    width = module(framework, "runtime").float64() if dtype == "float64" else contextlib.nullcontext()
    with width:  # x64 in JAX, floatx in Keras, as --dtype float64 sets them for its whole worker
        model = module(framework).create_model(cfg.mnist, mnist_init(cfg.seed), "cpu")
        return module(framework).probe(model, data.train_images[first], data.train_labels[first], "cpu")


@pytest.fixture(scope="module")
def correct_probes() -> Callable[[str, str], dict[str, np.ndarray]]:
    """Each framework's correct probes, computed once per dtype."""
    return functools.cache(probes)


@pytest.mark.parametrize("control", CONTROLS, ids=list(CONTROLS))
def test_each_control_agrees(
    control: str, correct: Callable, correct_probes: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same function written another way agrees at every stage and in the float32 and float64 probes' checks."""
    framework, edits = CONTROLS[control]
    with monkeypatch.context() as mp:
        edited(framework, edits)(mp)
        with jit_traced_anew(framework):
            mine = run_stages(framework, "sgd")
            mine_probes = {dtype: probes(framework, dtype) for dtype in ("float32", "float64")}
    records = {f: correct(f, "sgd") for f in FRAMEWORKS if f != framework} | {framework: mine}
    result = verdict(tmp_path, records, "sgd")
    assert result["status"] == parity.AGREE, parity.headline(result)
    ok = [{"framework": f, "status": "ok"} for f in FRAMEWORKS]
    for dtype in ("float32", "float64"):
        (tmp_path / dtype / "probes").mkdir(parents=True)
        for f in FRAMEWORKS:
            arrays = mine_probes[dtype] if f == framework else correct_probes(f, dtype)
            np.savez(tmp_path / dtype / "probes" / f"{f}.npz", **arrays)
        checks = parity.probe_checks(tmp_path / dtype, ok, parity.STRICT32)
        assert all(c["passed"] for c in checks), (dtype, checks)
