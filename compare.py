"""Run one task in PyTorch, TensorFlow and JAX side by side and say whether they agree.

    python compare.py --task mnist              # train all three, table + parity verdict
    python compare.py --task plane              # the five-point plane fit
    python compare.py --task mnist --benchmark  # steady-state speed instead of accuracy
    python compare.py --task mnist --precision bfloat16  # bfloat16 mixed precision (docs/mixed-precision.md)
    python compare.py --task mnist --seeds 0-4  # once per seed: means, intervals, equivalence
    python compare.py --benchmark --textbook --batch-size 32,100,1000 --repeat 3  # against the tutorials' loops
    python compare.py --report runs/mnist-...   # re-render report.md and curves.png
    python compare.py --check-setup             # each framework's version, devices and kernels, no training

Top to bottom: the arguments (parsed and checked in common/run/arguments.py) -> one frozen
config -> one worker process per framework (common/run/, common/bench/ for --benchmark,
common/verdict/seeds.py for --seeds) -> the table and the verdict (common/verdict/, common/report/).

Exit codes: 0 every requested framework ran, no check failed and, where two or more were
requested, they AGREE; 1 a framework or a check failed, or (--seeds) agreement was not shown;
2 bad usage or bad input (one line on stderr, never a traceback); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import environment, results, table
from common.bench import cases, tables
from common.bench.summary import summarise
from common.config import (
    LOOPS,
    BenchConfig,
    Margins,
    MnistConfig,
    ParallelConfig,
    PlaneConfig,
    RunConfig,
    default_lr,
)
from common.data import PLANE_POINTS, training_examples, user_data_dir
from common.errors import UserError
from common.io import atomic_write_json
from common.metrics import plane_optimum
from common.report import report, seedreport
from common.run import launch, placement
from common.run.arguments import (
    batch_sizes,
    check_arguments,
    check_batch_split,
    check_devices_exist,
    check_precision_runs,
    compiles,
    device_counts,
    make_parser,
    parse_frameworks,
    precisions,
    settings_names,
)
from common.run.fetch import prepare_data
from common.verdict import parity, seeds
from common.weights import load_canonical


def build_config(args: argparse.Namespace) -> RunConfig:
    """Validate the arguments once and freeze them; nothing downstream sees argparse."""
    check_arguments(args)
    defaults = MnistConfig()
    sizes = batch_sizes(args)
    mnist = MnistConfig(
        dataset=args.dataset,
        epochs=args.epochs or defaults.epochs,
        batch_size=sizes[0],
        lr=args.lr or default_lr(args.optimizer),
        optimizer=args.optimizer,
        train_limit=args.train_limit,
        dtype=args.dtype or defaults.dtype,
        precision=precisions(args)[0],
        init=args.init,
        eval_params=str(Path(args.eval_params).resolve()) if args.eval_params else None,
    )
    if mnist.eval_params:
        load_canonical(mnist.eval_params)  # refuse a bad checkpoint here, once, with exit 2
    n_train = training_examples(args.train_limit)
    for size in sizes:
        if size > n_train:
            raise UserError(f"--batch-size {size} is larger than the training set ({n_train} examples)")
    devices = device_counts(args)
    check_batch_split(sizes, devices)
    plane_defaults = PlaneConfig()
    plane = PlaneConfig(lr=args.lr or plane_defaults.lr, steps=args.steps or plane_defaults.steps)
    data_dir = user_data_dir(args.data_dir, args.dataset) if args.task == "mnist" else None  # only read
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = args.dataset if args.task == "mnist" else args.task
    out = args.out or f"runs/{name}-{'bench-' if args.benchmark else ''}{stamp}"
    if args.check_setup:  # the workers' job, results and logs: kept only where a framework failed
        out = args.out or str(Path(tempfile.gettempdir()) / f"triptych-check-{stamp}-{os.getpid()}")
    seed_list = seeds.parse(args.seeds) if args.seeds is not None else (args.seed,)
    cfg = RunConfig(
        task=args.task,
        frameworks=parse_frameworks(args.frameworks),
        device=args.device,
        # Timings compare each framework's default GPU kernels: strict numerics exist for the
        # parity checks, which a benchmark does not run (PyTorch's strict profile avoids cuDNN).
        fast=args.fast or args.benchmark,
        seed=seed_list[0],
        seeds=seed_list if len(seed_list) > 1 else (),  # one seed is a single run
        margins=Margins(
            accuracy_points=args.margin_accuracy or Margins().accuracy_points,
            test_loss=args.margin_loss or Margins().test_loss,
        ),
        out=str(Path(out).resolve()),
        data_dir=str(data_dir) if data_dir else None,
        threads=args.threads,
        timeout=args.timeout,
        quiet=args.quiet,
        benchmark=args.benchmark,
        setup_only=args.check_setup,
        settings=settings_names(args)[0],
        plane=plane,
        mnist=mnist,
        bench=bench_config(args, sizes, devices),
        # --benchmark times every count in bench.devices; a training run uses the one given.
        parallel=ParallelConfig(devices=1 if args.benchmark else devices[0], processes=args.processes),
    )
    seeds.check(cfg)
    return cfg


def bench_config(args: argparse.Namespace, sizes: tuple[int, ...], devices: tuple[int, ...]) -> BenchConfig:
    """The benchmark's axes (batch sizes, settings, loops) and protocol, from the options given."""
    defaults = BenchConfig()
    return BenchConfig(
        warmup_steps=defaults.warmup_steps,
        window_steps=args.window_steps or defaults.window_steps,
        windows=args.windows or defaults.windows,
        batch_sizes=sizes,
        settings=settings_names(args) if args.benchmark else defaults.settings,
        precisions=precisions(args),
        compiles=compiles(args),
        loops=LOOPS if args.textbook else defaults.loops,
        repeats=args.repeat or defaults.repeats,
        profile=args.profile,
        devices=devices if args.benchmark else defaults.devices,
    )


def preflight(cfg: RunConfig) -> RunConfig:
    """Everything that can refuse the run, before its output directory exists.

    Returns the config with the verified data directory every worker reads (mnist).
    """
    if cfg.device == "gpu" and not environment.gpu_visible():
        raise UserError("--device gpu: this machine shows no GPU (no NVIDIA device); use --device auto or cpu")
    check_devices_exist(cfg)
    if cfg.task == "mnist":
        check_precision_runs(cfg)
    return prepare_data(cfg)


def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory unless --overwrite says so."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    earlier = [p for p in (out / "results.json", *out.glob("seed-*/results.json")) if p.exists()]
    if earlier and not overwrite:  # a --seeds run stopped hard leaves only its seeds' results
        held = earlier[0].relative_to(out)
        raise UserError(f"--out {out} already holds {held}; pass --overwrite or choose another directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: not writable; choose another directory")


def run(cfg: RunConfig) -> int:
    if cfg.seeds:
        return run_seeds(cfg)
    if cfg.benchmark:
        return run_benchmark(cfg)
    env = environment.describe(cfg.threads)
    interrupted = False
    try:
        runs = launch.run_all(cfg)
    except launch.Interrupted as stop:
        runs, interrupted = stop.runs, True
    doc = assemble(cfg, env, runs)
    results.write(cfg.out_dir, doc)
    written = [path.name for path in report.write_report(doc, cfg.out_dir)]
    print(summary(doc))
    print(f"\n{parity.headline(doc['parity'])}; {', '.join(['results.json', *written])} in {cfg.out_dir}")
    return 130 if interrupted else exit_code(doc)


def run_seeds(cfg: RunConfig) -> int:
    """--seeds: each seed a whole single run (common.verdict.seeds), then the statistics across them."""
    doc, interrupted = seeds.run_all(cfg, environment.describe(cfg.threads))
    results.write(cfg.out_dir, doc)
    written = [path.name for path in report.write_report(doc, cfg.out_dir)]
    print(seedreport.text(doc))
    print(f"\n{parity.headline(doc['parity'])}\n{', '.join(['results.json', *written])} in {cfg.out_dir}")
    return 130 if interrupted else exit_code(doc)


def run_benchmark(cfg: RunConfig) -> int:
    """--benchmark: every case (common.bench.cases), then bench.json, report.md, bench.png and the table."""
    env = environment.describe(cfg.threads)
    interrupted = False
    try:
        runs, reference = cases.run(cfg)
    except launch.Interrupted as stop:
        runs, reference, interrupted = stop.runs, cases.reference_summary([]), True
    doc = {**assemble(cfg, env, runs), "reference": reference}
    results.write(cfg.out_dir, doc)
    bench = summarise(doc)
    atomic_write_json(cfg.out_dir / "bench.json", bench)
    written = [path.name for path in report.write_report(doc, cfg.out_dir)]
    print(tables.table(bench))
    print(f"\n{', '.join(['bench.json', 'results.json', *written])} in {cfg.out_dir}")
    return 130 if interrupted else exit_code(doc)


def assemble(cfg: RunConfig, env: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if cfg.task == "plane":
        extra["optimum"] = plane_optimum(PLANE_POINTS)
        verdict = parity.plane_parity(runs, extra["optimum"])
    elif cfg.benchmark:
        verdict = parity.verdict([], runs, note="benchmark mode: timings only, no parity checks")
    else:
        verdict = parity.mnist_parity(cfg, runs)
    return results.build(cfg.task, cfg.to_dict(), env, runs, verdict, profile=cfg.profile, **extra)


def summary(doc: dict[str, Any]) -> str:
    lines = [table.text(*table.runs_table(doc))]
    parallel = table.parallel_table(doc)
    if parallel:
        lines += ["", "Data-parallel", table.text(*parallel)]
    if doc["parity"].get("stages"):
        lines += ["", f"Stages ({table.STAGES_TITLE})"]
        lines.append(table.text(*table.stages_table(doc["parity"]["stages"])))
    if doc["parity"]["checks"] or doc["parity"]["note"]:
        lines += ["", f"Parity ({doc['parity']['note']})" if doc["parity"]["note"] else "Parity"]
        if doc["parity"]["checks"]:
            lines.append(table.text(*table.checks_table(doc["parity"]["checks"])))
    return "\n".join(lines)


def exit_code(doc: dict[str, Any]) -> int:
    """0 when every requested framework ran, no check failed and, for two or more, they agree."""
    every_ran = all(r["status"] == "ok" for r in doc["runs"])
    a_check_failed = not all(c["passed"] for c in doc["parity"]["checks"])
    compared = not doc["config"].get("benchmark") and len({r["framework"] for r in doc["runs"]}) > 1
    disagree = compared and parity.status_of(doc["parity"]) != parity.AGREE
    return 0 if every_ran and not a_check_failed and not disagree else 1


def check_setup(cfg: RunConfig, temporary: bool) -> int:
    """--check-setup: each framework says what it sees and would use, in its own worker; 0 when all of them could.

    A `temporary` output directory (no --out) is removed unless a framework failed: its line names its log there.
    """
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    runs = launch.check_all(cfg)
    ok = all(r["status"] == "ok" for r in runs)
    if ok and temporary:
        shutil.rmtree(cfg.out_dir, ignore_errors=True)
    return 0 if ok else 1


def rerender(directory: Path) -> int:
    """--report DIR: report.md and curves.png again from results.json, without training."""
    doc = results.load(directory)
    out = directory if directory.is_dir() else directory.parent
    try:
        written = report.write_report(doc, out)
    except OSError as exc:
        raise UserError(f"--report {directory}: cannot write the report there ({exc.strerror or exc})") from None
    for path in written:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        if args.report:
            return rerender(Path(args.report))
        cfg = placement.settle(build_config(args))  # --device auto: where the frameworks can all run
        if cfg.setup_only:
            return check_setup(cfg, temporary=args.out is None)
        cfg = preflight(cfg)
        prepare_output(cfg.out_dir, args.overwrite)
        return run(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # results already written stay; nothing half-written (common.io)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
