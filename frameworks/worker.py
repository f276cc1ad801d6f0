"""One framework, one process: `python -m frameworks.worker FRAMEWORK JOB.json RESULT.json`.

compare.py starts one worker per framework so that frameworks never share a GPU, a thread
pool or a crash. The worker only wires things together: it imports the named framework's
package, hands it the shared data, weights and config, and writes the run's entry for
results.json (atomically) with the measurements done by `common`.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from common import environment, settings, stages
from common.config import RunConfig
from common.data import (
    PIXELS,
    PLANE_POINTS,
    Mnist,
    batch_order,
    load_mnist,
    normalise_split,
    run_data_dir,
    training_subset,
)
from common.errors import UserError
from common.io import atomic_save_npz, atomic_write_json
from common.metrics import accuracy, cross_entropy, plane_loss
from common.parallel import Engine, prefixed, process_rank
from common.recorder import NonFiniteLoss, Recorder
from common.table import setup_line
from common.weights import load_canonical, mnist_init, save_canonical


def run_plane(cfg: RunConfig, fw: ModuleType, device: str) -> dict[str, Any]:
    plane = importlib.import_module(f"{fw.__name__}.plane")
    trajectory = plane.fit_plane(cfg, device)
    losses = [plane_loss(a, b, PLANE_POINTS) for a, b in trajectory]
    a, b = trajectory[-1]
    return {"a": a, "b": b, "final_loss": losses[-1], "losses": losses, "trajectory": trajectory}


@functools.cache
def pixels(data_dir: str | None, dataset: str) -> Mnist:
    """The dataset's pixels as stored, read and verified once per process (several dtypes use them)."""
    return load_mnist(run_data_dir(data_dir, dataset), PIXELS, dataset=dataset)


def load_pixels(cfg: RunConfig) -> Mnist:
    """The shared pixels, cut to --train-limit."""
    data = pixels(cfg.data_dir, cfg.mnist.dataset)
    subset = training_subset(len(data.train_labels), cfg.mnist.train_limit, cfg.seed)
    return Mnist(data.train_images[subset], data.train_labels[subset], data.test_images, data.test_labels)


def load_data(cfg: RunConfig) -> Mnist:
    """The shared data in the run's dtype, cut to --train-limit."""
    return normalise_split(load_pixels(cfg), cfg.mnist.dtype, cfg.mnist.dataset)


def run_mnist(cfg: RunConfig, fw: ModuleType, device: str) -> dict[str, Any]:
    mnist = importlib.import_module(f"{fw.__name__}.mnist")
    name = fw.__name__.rsplit(".", 1)[1]
    data = load_data(cfg)
    m = cfg.mnist
    if m.eval_params:
        return evaluate_params(cfg, mnist, data, device, name)
    if cfg.benchmark:
        return run_benchmark(cfg, fw, data, device)
    if cfg.checks_only:
        return run_checks_only(cfg, fw, device)
    if cfg.parallel.enabled:
        return run_parallel(cfg, fw, data, device)
    stages_seconds = save_first_checks(cfg, fw, data, device, probe=m.init == "shared")
    init = mnist_init(cfg.seed) if m.init == "shared" else None
    model = mnist.create_model(m, init, device, seed=cfg.seed)
    steps_per_epoch = len(data.train_labels) // m.batch_size
    recorder = Recorder(name, data.test_labels, m.epochs, steps_per_epoch, m.batch_size, cfg.quiet)
    try:
        mnist.train(cfg, model, data, recorder, device)
    finally:
        recorder.close()
    atomic_save_npz(cfg.out_dir / "loops" / f"{name}.npz", recorder.loop())  # common.loop: every step, exactly
    params_path = cfg.out_dir / "params" / f"{name}.npz"
    save_canonical(params_path, mnist.get_params(model))
    return {
        **recorder.result(),
        "params": str(params_path.relative_to(cfg.out_dir)),
        "stages_seconds": stages_seconds,  # the float64 stages' share of wall_seconds
    }


# --- The float64 stages (common.stages): every step of the recipe, before the float32 training ---


def save_first_checks(cfg: RunConfig, fw: ModuleType, data: Mnist, device: str, probe: bool = True) -> float:
    """What the verdict reads before training: the float64 stages (stages/<framework>.npz) and the float32
    first-step probe from the shared start (probes/<framework>.npz). Returns the stages' seconds."""
    mnist = importlib.import_module(f"{fw.__name__}.mnist")
    name = fw.__name__.rsplit(".", 1)[1]
    start = time.perf_counter()
    atomic_save_npz(cfg.out_dir / "stages" / f"{name}.npz", run_stages(cfg, fw, device))
    seconds = time.perf_counter() - start
    if not probe:
        return seconds
    idx = batch_order(len(data.train_labels), cfg.mnist.batch_size, cfg.seed, epoch=0)[0]  # the first batch
    files = {cfg.mnist.precision: f"{name}.npz"}
    if cfg.mnist.precision != "float32":  # a mixed-precision run also probes the batch in float32, for its own check
        files["float32"] = f"{name}-float32.npz"
    for precision, file in files.items():
        model = mnist.create_model(replace(cfg.mnist, precision=precision), mnist_init(cfg.seed), device)
        probed = mnist.probe(model, data.train_images[idx], data.train_labels[idx], device)
        atomic_save_npz(cfg.out_dir / "probes" / file, probed)
    return seconds


def stage_config(cfg: RunConfig) -> RunConfig:
    """The run's recipe in float64, for stages.EPOCHS epochs of the stage data (the run's first STEPS batches)."""
    m64 = replace(
        cfg.mnist,
        dtype="float64",
        precision="float32",  # the stages stay float64 whatever --precision the run trains in
        epochs=stages.EPOCHS,
        eval_batch_size=stages.EVAL_BATCH,
        init="shared",
    )
    return replace(cfg, mnist=m64, quiet=True)


def stage_inputs(cfg: RunConfig) -> Mnist:
    """The run's data cut to what the update and evaluation stages use, in float64."""
    cut = stages.stage_data(load_pixels(cfg), cfg.mnist.batch_size, cfg.seed)
    return normalise_split(cut, "float64", cfg.mnist.dataset)


def run_stages(cfg: RunConfig, fw: ModuleType, device: str) -> dict[str, np.ndarray]:
    """This framework's five stages in float64, from the shared start, with its own model, loop and predict."""
    mnist = importlib.import_module(f"{fw.__name__}.mnist")
    runtime = importlib.import_module(f"{fw.__name__}.runtime")
    s64, data = stage_config(cfg), stage_inputs(cfg)
    b = cfg.mnist.batch_size
    with runtime.float64():  # x64 in JAX, floatx in Keras: float64 only while the stages run
        model = mnist.create_model(s64.mnist, mnist_init(cfg.seed), device)
        # The update stage's first batch is the run's first batch (common.stages.stage_rows).
        first = batch_order(len(data.train_labels), b, cfg.seed, epoch=0)[0]
        probe = mnist.probe(model, data.train_images[first], data.train_labels[first], device)
        recorder = Recorder("stages", data.test_labels, stages.EPOCHS, stages.STEPS, b, quiet=True)
        mnist.train(s64, model, data, recorder, device)
        weights = mnist.get_params(model)
    logits = recorder.test_logits
    return {
        **{k: v for k, v in probe.items() if k.startswith(("layer/", "grad/")) or k == "loss"},
        "update/losses": np.asarray(recorder.step_losses),
        **{f"update/{k}": v for k, v in weights.items()},
        "evaluation/logits": logits,
        "evaluation/accuracy": np.asarray(accuracy(logits, data.test_labels)),
    }


def run_checks_only(cfg: RunConfig, fw: ModuleType, device: str) -> dict[str, Any]:
    """common.verdict.sweep: each seed's stages and float32 first-step probe in seed-S/, as its run writes them."""
    for seed in cfg.seeds or (cfg.seed,):
        one = replace(cfg, seed=seed, seeds=(), out=str(cfg.out_dir / f"seed-{seed}"))
        save_first_checks(one, fw, load_data(one), device)
    return {"seeds": list(cfg.seeds or (cfg.seed,))}


def run_benchmark(cfg: RunConfig, fw: ModuleType, data: Mnist, device: str) -> dict[str, Any]:
    """Every case of this worker's settings: each batch size (ascending), each loop.

    `bench.benchmark` times this project's loop and `textbook.benchmark` the framework's
    tutorial loop, with the same signature and the same protocol (common.timing). Peak RSS
    is the process's peak so far, so with batch sizes ascending it is each case's own.
    """
    if cfg.parallel.enabled:
        return run_parallel_benchmark(cfg, fw, data, device)
    cases = []
    # The textbook loops are the tutorials' float32 steps: timed beside the uncompiled float32 step only.
    plain = cfg.mnist.precision == "float32" and not cfg.mnist.compiled
    for batch_size in sorted(cfg.bench.batch_sizes):
        one = replace(cfg, mnist=replace(cfg.mnist, batch_size=batch_size))
        for loop in cfg.bench.loops if plain else ("project",):
            module = importlib.import_module(f"{fw.__name__}.{'bench' if loop == 'project' else 'textbook'}")
            result = module.benchmark(one, mnist_init(cfg.seed), data, device)
            cases.append({"loop": loop, **result, "peak_rss_mb": peak_rss_mb()})
    return {"cases": cases}


def run_parallel_benchmark(cfg: RunConfig, fw: ModuleType, data: Mnist, device: str) -> dict[str, Any]:
    """--benchmark --devices N: parallel.py's data-parallel step at each batch size; every rank times, rank 0 records.

    Only this project's loop: the textbook loops are single-device tutorials.
    """
    bench = importlib.import_module(f"{fw.__name__}.bench")
    parallel = importlib.import_module(f"{fw.__name__}.parallel")
    engine = parallel.setup(cfg, device)
    cases = []
    for batch_size in sorted(cfg.bench.batch_sizes):
        one = replace(cfg, mnist=replace(cfg.mnist, batch_size=batch_size))
        result = bench.benchmark_parallel(one, engine, mnist_init(cfg.seed), data, device)
        if engine.processes > 1:  # this process's CPU time is one replica's, not the step's
            result.pop("window_cpu_ms", None)
        record = {**engine.record(), "per_replica_batch": batch_size // engine.devices}
        cases.append({"loop": "project", **result, **record, "peak_rss_mb": peak_rss_mb()})
    parallel.close(engine)
    return {"cases": cases}


# --- Data-parallel training (--devices N): the framework's engine, checked against one device ---


def run_parallel(cfg: RunConfig, fw: ModuleType, data: Mnist, device: str) -> dict[str, Any]:
    """Train on N replicas with the framework's own engine; every rank runs this, rank 0 records.

    Before training, rank 0 computes the float64 stages on one device, as every run does; then
    the engine trains the update stage and takes the first-step gradients, which common.verdict.parity
    compares with the same framework's single device (probes/<framework>-parallel.npz).
    """
    parallel = importlib.import_module(f"{fw.__name__}.parallel")
    name = fw.__name__.rsplit(".", 1)[1]
    m = cfg.mnist
    engine = parallel.setup(cfg, device)
    chief = engine.rank == 0
    init = mnist_init(cfg.seed) if m.init == "shared" else None
    first = batch_order(len(data.train_labels), m.batch_size, cfg.seed, epoch=0)[0]
    if chief:  # the stages and the first-step checks, on one device as always
        save_first_checks(cfg, fw, data, device)
    reference = parallel_stage(cfg, fw, engine, device)
    model, _ = parallel.create_model(engine, m, mnist_init(cfg.seed), device)
    reference |= prefixed(
        "parallel/grads",
        parallel.gradients(model, *parallel.shard(engine, data.train_images[first], data.train_labels[first], device)),
    )
    if chief:
        atomic_save_npz(cfg.out_dir / "probes" / f"{name}-parallel.npz", reference)
    model, optimizer = parallel.create_model(engine, m, init, device, seed=cfg.seed)
    steps_per_epoch = len(data.train_labels) // m.batch_size
    recorder = Recorder(name, data.test_labels, m.epochs, steps_per_epoch, m.batch_size, cfg.quiet or not chief)
    try:
        parallel.train(cfg, engine, model, optimizer, data, recorder, device)
    finally:
        recorder.close()
    entry = engine.record()
    if chief:  # only rank 0 evaluates and records
        atomic_save_npz(cfg.out_dir / "loops" / f"{name}.npz", recorder.loop())
        params_path = cfg.out_dir / "params" / f"{name}.npz"
        save_canonical(params_path, parallel.get_params(model))
        entry |= {**recorder.result(), "params": str(params_path.relative_to(cfg.out_dir))}
    parallel.close(engine)
    return entry


def parallel_stage(cfg: RunConfig, fw: ModuleType, engine: Engine, device: str) -> dict[str, np.ndarray]:
    """The update stage (float64) through the engine: its own loop over the same stage data as run_stages."""
    parallel = importlib.import_module(f"{fw.__name__}.parallel")
    runtime = importlib.import_module(f"{fw.__name__}.runtime")
    s64, data = stage_config(cfg), stage_inputs(cfg)
    recorder = Recorder("stages", data.test_labels, stages.EPOCHS, stages.STEPS, cfg.mnist.batch_size, quiet=True)
    with runtime.float64():
        model, optimizer = parallel.create_model(engine, s64.mnist, mnist_init(cfg.seed), device)
        parallel.train(s64, engine, model, optimizer, data, recorder, device)
        weights = parallel.get_params(model)
    return {"parallel/losses": np.asarray(recorder.step_losses), **prefixed("parallel/params", weights)}


def evaluate_params(cfg: RunConfig, mnist: ModuleType, data: Mnist, device: str, name: str) -> dict[str, Any]:
    """Score a canonical checkpoint on all 10,000 test images; keep the logits for parity."""
    params = {k: v.astype(cfg.mnist.dtype) for k, v in load_canonical(cfg.mnist.eval_params).items()}
    model = mnist.create_model(cfg.mnist, params, device)
    x_test, _ = mnist.to_device(data.test_images, data.test_labels, device)
    logits = mnist.predict(model, x_test, cfg.mnist.eval_batch_size)
    atomic_save_npz(cfg.out_dir / "logits" / f"{name}.npz", {"logits": logits})
    return {
        "test_accuracy": accuracy(logits, data.test_labels),
        "test_loss": cross_entropy(logits, data.test_labels),
        "logits": str(Path("logits") / f"{name}.npz"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(framework: str, cfg: RunConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"framework": framework, "status": "failed", "device": None}
    start = time.perf_counter()
    try:
        fw = importlib.import_module(f"frameworks.{framework}")
        runtime = importlib.import_module(f"frameworks.{framework}.runtime")
        try:
            entry["device"] = runtime.configure(cfg)  # first: threads and devices are fixed before any use
        finally:
            entry.update(runtime.versions())
        entry["threads"] = runtime.threads()
        kernels = runtime.kernels(entry["device"])  # the convolutions' kernel library and threads, as it reports them
        entry["setup"] = setup(runtime, cfg, entry["device"], kernels["library"])
        if not cfg.setup_only:  # compare.py --check-setup stops here; a run says the same in short, then works
            if not cfg.quiet and process_rank() == 0:
                print(setup_line(entry, short=True), file=sys.stderr, flush=True)
            task = run_plane if cfg.task == "plane" else run_mnist
            entry.update(task(cfg, fw, entry["device"]))
            if cfg.task == "mnist":
                entry["kernels"] = {**kernels, "settings": cfg.settings, "env": settings_env(framework, cfg)}
        entry["status"] = "ok"
    except (UserError, NonFiniteLoss) as exc:
        entry["error"] = str(exc)
    except MemoryError:
        entry["error"] = "out of memory; lower --batch-size"
    except Exception as exc:  # any framework fault is recorded, not raised
        traceback.print_exc(file=sys.stderr)
        entry["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    entry["wall_seconds"] = time.perf_counter() - start
    entry["peak_rss_mb"] = peak_rss_mb()
    return entry


# Where a CPU-only build runs on a machine with an NVIDIA GPU: the command that installs the CUDA builds.
CUDA_BUILDS = "make run GPU=1"


def setup(runtime: ModuleType, cfg: RunConfig, device: str, kernels: str) -> dict[str, Any]:
    """What the framework sees and uses: every device, the convolutions' kernels (with the CPU's widest vectors)
    and, where it runs on the CPU of a machine that shows an NVIDIA GPU, why, and the fix for a CPU-only build."""
    found: dict[str, Any] = {"devices": runtime.devices(), "kernels": kernels}
    if device == "cpu":
        found["vectors"] = environment.widest_vectors()
        if cfg.device != "cpu" and environment.gpu_visible():
            why = runtime.why_no_gpu()  # each says "CPU-only" where the build is the cause
            found["no_gpu"] = {"reason": why, "fix": CUDA_BUILDS if "CPU-only" in why else None}
    return found


def settings_env(framework: str, cfg: RunConfig) -> dict[str, str]:
    """The variables of common.settings as this process saw them (set by the launcher, or not)."""
    names = {*settings.SWITCHES, *settings.env_changes(framework, "fastest")}
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}


def main(argv: list[str]) -> int:
    framework, job_path, result_path = argv
    cfg = RunConfig.from_dict(json.loads(Path(job_path).read_text()))
    cfg = replace(cfg, frameworks=(framework,))
    entry = run(framework, cfg)
    if not cfg.parallel.enabled:
        atomic_write_json(Path(result_path), entry)
        return 0
    return finish_rank(entry, Path(result_path))


def finish_rank(entry: dict[str, Any], result: Path) -> int:
    """Rank 0 writes the result. A rank that failed writes why, and exits 1 so its launcher stops the others.

    A failure is recorded per rank with its time, not as the result: when one rank dies, its
    peers fail next (a closed connection), and the launcher names the one that failed first.
    """
    rank = process_rank()
    if entry["status"] == "ok":
        if rank == 0:
            atomic_write_json(result, entry)
        return 0
    record = {"rank": rank, "error": entry.get("error", ""), "failed_at": time.time()}
    atomic_write_json(result.with_name(f"{result.stem}.rank{rank}.json"), record)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
