"""What compare.py's command line may ask: its parser, and every check that refuses an argument.

Each check raises UserError with one line (compare.py exits 2), before anything is read, fetched
or created; check_devices_exist is the one that looks at the machine (its GPUs), in preflight.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from common import environment, settings
from common.config import BY_NAME, COMPILES, FRAMEWORKS, PRECISIONS, TASKS, BenchConfig, MnistConfig, RunConfig
from common.datasets import NAMES as DATASETS
from common.errors import UserError
from common.run import cluster


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit 2, instead of argparse's usage block."""
        self.exit(2, f"error: {message} (see --help)\n")


def make_parser() -> Parser:
    p = Parser(description="Compare PyTorch, TensorFlow and JAX on one task.")
    p.add_argument("--task", choices=TASKS, default="mnist")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma list (default: all three)")
    p.add_argument(
        "--device",
        choices=("auto", "each", "cpu", "gpu"),
        default="auto",
        help="auto: the device every framework can run on (the CPU where only some see a GPU); each: every framework"
        " its own (frameworks on a GPU and on the CPU are not compared)",
    )
    p.add_argument(
        "--fast", action="store_true", help="GPU: allow TF32 and non-deterministic kernels (always on with --benchmark)"
    )
    seed = p.add_mutually_exclusive_group()
    seed.add_argument("--seed", type=int, default=0)
    # --seeds (common.verdict.seeds): one run per seed, then statistics across seeds.
    seed.add_argument("--seeds", metavar="LIST", help="mnist: train once per seed (0-4 or 0,1,2) and test equivalence")
    p.add_argument(
        "--margin-accuracy",
        type=float,
        metavar="POINTS",
        help="--seeds: equivalence margin, points of test accuracy (0.25)",
    )
    p.add_argument("--margin-loss", type=float, metavar="LOSS", help="--seeds: equivalence margin of test loss (0.01)")
    p.add_argument("--out", help="output directory (default runs/<task or dataset>-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory's results")
    p.add_argument(
        "--data-dir",
        help="directory holding the dataset's four IDX files, raw or .gz; only read (default: $MNIST_DIR for mnist, "
        "else the cache, Debian's copy or the mirrors)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per framework: PyTorch's and TensorFlow's pools, JAX's CPU affinity (default: all cores)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a framework is stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--lr", type=float, help="learning rate (plane: 0.005, mnist: 0.02 SGD / 0.001 Adam)")
    p.add_argument("--steps", type=int, help="plane: gradient-descent iterations (default 5000)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist", help="mnist: the CNN's data (default mnist)")
    p.add_argument("--epochs", type=int, help="mnist: epochs (default 2)")
    p.add_argument(
        "--batch-size",
        metavar="N",
        help="mnist: training batch size (default 100); --benchmark: a list, e.g. 32,100,1000",
    )
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="mnist: SGD with momentum 0.9, or Adam")
    p.add_argument("--train-limit", type=int, help="mnist: use the first N examples of the shuffled training set")
    p.add_argument("--dtype", choices=("float32", "float64"), help="mnist: default float32")
    p.add_argument(
        "--init", choices=("shared", "native"), default="shared", help="mnist: shared weights or each framework's own"
    )
    p.add_argument("--eval-params", metavar="FILE", help="mnist: score this canonical .npz in every framework")
    p.add_argument("--benchmark", action="store_true", help="mnist: time training steps instead of training")
    # Benchmark axes and protocol (common.timing, common.bench, common.settings).
    p.add_argument(
        "--settings",
        metavar="NAME",
        help="each framework's 'defaults' or its 'fastest' measured settings (training default: fastest;"
        " --benchmark: a list, default defaults,fastest)",
    )
    p.add_argument(
        "--precision",
        metavar="NAME",
        help="mnist: float32 (default) or bfloat16 mixed precision (bfloat16 compute, float32 weights);"
        " --benchmark: a list, e.g. float32,bfloat16",
    )
    p.add_argument(
        "--compile",
        metavar="LIST",
        help="--benchmark: off (the training step), on (torch.compile, TensorFlow jit_compile=True, JAX jit),"
        " or off,on",
    )
    p.add_argument("--textbook", action="store_true", help="--benchmark: also time each framework's textbook loop")
    p.add_argument("--profile", action="store_true", help="--benchmark: where the step's time goes (each profiler)")
    p.add_argument("--repeat", type=int, help="--benchmark: run the whole sequence K times, alternating (default 1)")
    p.add_argument("--windows", type=int, help="--benchmark: timed windows per case (default 5)")
    p.add_argument("--window-steps", type=int, help="--benchmark: steps per window (default 20)")
    p.add_argument("--report", metavar="DIR", help="re-render report.md and curves.png from DIR/results.json")
    p.add_argument(
        "--check-setup",
        action="store_true",
        help="without data or training: each framework's version, the devices it sees, the one it would run on, its"
        " kernels, and where it sees no GPU on a machine that has one, why (one line each)",
    )
    add_parallel_arguments(p)
    return p


# --- Data-parallel training (--devices, --processes): docs/distributed.md ---


def add_parallel_arguments(p: Parser) -> None:
    g = p.add_argument_group("data-parallel training (mnist; docs/distributed.md)")
    g.add_argument(
        "--devices",
        default="1",
        metavar="N",
        help="train on N devices with each framework's own engine, the batch split evenly (CPU: N simulated devices);"
        " --benchmark takes a list (1,2) and times each against one device",
    )
    g.add_argument(
        "--processes",
        type=int,
        metavar="P",
        help="run each engine's multi-machine form as P processes on this machine, over the loopback",
    )


def device_counts(args: argparse.Namespace) -> tuple[int, ...]:
    """--devices N or, for --benchmark, a list such as 1,2: whole numbers of 1 or more, repeats dropped."""
    try:
        counts = tuple(dict.fromkeys(int(v) for v in str(args.devices).split(",")))
    except ValueError:
        raise UserError(
            f"--devices must be a whole number or, with --benchmark, a comma-separated list, got {args.devices!r}"
        ) from None
    for n in counts:
        if n < 1:
            raise UserError(f"--devices must be 1 or more, got {n}")
    if len(counts) > 1 and not args.benchmark:
        given = args.devices
        raise UserError(f"--devices takes one value without --benchmark (lists are for --benchmark), got {given}")
    return counts


def check_parallel(args: argparse.Namespace) -> None:
    """--devices and --processes: what no engine can run."""
    counts = device_counts(args)
    if args.processes is not None and args.processes < 1:
        raise UserError(f"--processes must be 1 or more, got {args.processes}")
    if counts == (1,) and args.processes is None:
        return
    if counts == (1,):
        raise UserError("--processes runs a data-parallel engine across processes; give --devices 2 or more")
    if args.task != "mnist":
        raise UserError("--devices applies to --task mnist; the plane fit runs on one device")
    if args.benchmark and args.processes is not None:
        raise UserError("--benchmark times each engine's single-machine form; leave out --processes")
    if args.eval_params:
        raise UserError("--eval-params scores a checkpoint on one device; leave out --devices")
    if args.processes is not None and counts[0] % args.processes:
        raise UserError(f"--processes {args.processes} does not divide --devices {counts[0]} evenly")


def check_batch_split(batch_sizes: tuple[int, ...], devices: tuple[int, ...]) -> None:
    for batch_size in batch_sizes:
        for n in devices:
            if batch_size % n:
                raise UserError(
                    f"--batch-size {batch_size} does not split evenly over --devices {n}; choose a multiple of {n}"
                )


def check_devices_exist(cfg: RunConfig) -> None:
    """More GPUs than exist is refused; on a CPU, N devices are simulated (docs/distributed.md)."""
    par = cfg.parallel
    most = max(par.devices, *cfg.bench.devices)
    if most < 2:
        return
    gpus = len(cluster.visible_gpus()) if cfg.device != "cpu" and environment.gpu_visible() else 0
    if gpus and most > gpus:
        raise UserError(
            f"--devices {most}: this machine shows {gpus} GPU{'s' if gpus > 1 else ''}; "
            "give at most that many, or --device cpu to simulate devices on the CPU"
        )
    if not gpus and par.processes and par.local_devices > 1 and "tensorflow" in cfg.frameworks:
        raise UserError(
            f"--devices {par.devices} --processes {par.processes}: TensorFlow's MultiWorkerMirroredStrategy drives one "
            f"CPU device per worker; give --processes {par.devices}, or leave tensorflow out of --frameworks"
        )


SEED_MAX = 2**32 - 1  # NumPy's legacy seeding (Keras's set_random_seed) and JAX's key take 32 bits


def number(name: str, value: float | None) -> None:
    """A given number must be finite and positive: a nan --timeout would never fire."""
    if value is None:
        return
    if not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}")
    if value <= 0:
        raise UserError(f"{name} must be positive, got {value:g}")


def parse_frameworks(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown or not names:
        raise UserError(f"unknown framework {','.join(unknown) or text!r}; choose from {', '.join(FRAMEWORKS)}")
    return tuple(dict.fromkeys(names))


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse what cannot run, before anything is read, fetched or created."""
    positive_numbers = ("lr", "steps", "epochs", "train_limit", "timeout", "margin_accuracy", "margin_loss")
    for name in (*positive_numbers, "repeat", "windows", "window_steps"):
        number("--" + name.replace("_", "-"), getattr(args, name))
    if args.threads < 0:
        raise UserError(f"--threads must be 0 (all cores) or positive, got {args.threads}")
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed must be between 0 and {SEED_MAX}, got {args.seed}")
    if args.benchmark and args.task != "mnist":
        raise UserError("--benchmark times the MNIST training step; it does not apply to --task plane")
    if args.benchmark and args.eval_params:
        raise UserError("--benchmark times training and --eval-params scores a checkpoint: choose one")
    check_parallel(args)
    check_benchmark_arguments(args)
    check_precision_arguments(args)
    check_setup_arguments(args)


def check_setup_arguments(args: argparse.Namespace) -> None:
    """--check-setup starts each framework as a single run would, and trains nothing."""
    if not args.check_setup:
        return
    for flag, given in (
        ("--benchmark", args.benchmark),
        ("--seeds", args.seeds is not None),
        ("--eval-params", args.eval_params is not None),
        ("--devices", str(args.devices) != "1"),
    ):
        if given:
            raise UserError(f"--check-setup trains nothing; leave out {flag}")


BENCHMARK_ONLY = ("textbook", "profile", "repeat", "windows", "window_steps", "compile")


def check_benchmark_arguments(args: argparse.Namespace) -> None:
    """Lists (batch sizes, settings) and the timing options belong to --benchmark; the rest takes one value."""
    for name in BENCHMARK_ONLY:
        if getattr(args, name) not in (None, False) and not args.benchmark:
            raise UserError(f"--{name.replace('_', '-')} applies to --benchmark only")
    for flag, values in (
        ("--batch-size", batch_sizes(args)),
        ("--settings", settings_names(args)),
        ("--precision", precisions(args)),
    ):
        if len(values) > 1 and not args.benchmark:
            given = ",".join(map(str, values))
            raise UserError(f"{flag} takes one value without --benchmark (lists are for --benchmark), got {given}")


def batch_sizes(args: argparse.Namespace) -> tuple[int, ...]:
    """--batch-size 100 or, for --benchmark, 32,100,1000: whole positive numbers, repeats dropped."""
    if args.batch_size is None:
        return (MnistConfig().batch_size,)
    try:
        values = tuple(int(v) for v in args.batch_size.split(","))
    except ValueError:
        raise UserError(
            f"--batch-size must be a whole number or a comma-separated list of them, got {args.batch_size!r}"
        ) from None
    for value in values:
        number("--batch-size", value)
    return tuple(dict.fromkeys(values))


def settings_names(args: argparse.Namespace) -> tuple[str, ...]:
    if args.settings is None:
        return BenchConfig().settings if args.benchmark else (settings.TRAINING,)
    try:
        return settings.parse(args.settings)
    except ValueError as exc:
        raise UserError(str(exc)) from None


# --- Mixed precision (--precision) and compiled steps (--compile): docs/mixed-precision.md ---


def names_from(flag: str, text: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """'float32,bfloat16' -> ('float32', 'bfloat16'); one line naming anything unknown."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        raise UserError(f"{flag}: unknown {','.join(unknown) or repr(text)}; choose from {', '.join(choices)}")
    return names


def precisions(args: argparse.Namespace) -> tuple[str, ...]:
    if args.precision is None:
        return (MnistConfig().precision,)
    return names_from("--precision", args.precision, PRECISIONS)


def compiles(args: argparse.Namespace) -> tuple[str, ...]:
    if args.compile is None:
        return BenchConfig().compiles
    return names_from("--compile", args.compile, COMPILES)


def check_precision_arguments(args: argparse.Namespace) -> None:
    """Mixed precision computes below float32 weights: it needs the MNIST task, float32 weights and one device."""
    compiles(args)
    mixed = [p for p in precisions(args) if p != "float32"]
    if not mixed:
        return
    if args.task != "mnist":
        raise UserError("--precision applies to --task mnist; the plane fit runs in float64")
    if args.dtype == "float64":
        raise UserError(f"--precision {mixed[0]} keeps float32 weights; leave out --dtype float64")
    if max(device_counts(args)) > 1:
        raise UserError(f"--precision {mixed[0]} is built for one device; leave out --devices")


def check_precision_runs(cfg: RunConfig) -> None:
    """float16 only on a GPU, and only a precision every requested framework builds (preflight: it sees the GPU)."""
    wanted = cfg.bench.precisions if cfg.benchmark else (cfg.mnist.precision,)
    gpu = cfg.device != "cpu" and environment.gpu_visible()
    if "float16" in wanted and not gpu:
        raise UserError(
            "--precision float16 runs on a GPU only (its loss scaling and fast kernels are GPU features);"
            " on a CPU use --precision bfloat16"
        )
    lacking_bfloat16 = environment.onednn_bfloat16_lacking()
    if "bfloat16" in wanted and "tensorflow" in cfg.frameworks and not gpu and lacking_bfloat16:
        others = ",".join(f for f in cfg.frameworks if f != "tensorflow") or "pytorch,jax"
        raise UserError(
            "--precision bfloat16: TensorFlow's bfloat16 convolutions run on oneDNN, which builds them only"
            f" with AVX512_BF16 or AMX_BF16, and {lacking_bfloat16}; leave it out (--frameworks {others})"
        )
    for precision in wanted:
        lacking = [f for f in cfg.frameworks if precision not in BY_NAME[f].precisions]
        if lacking:
            raise UserError(
                f"--precision {precision} is not built for {', '.join(lacking)} (docs/mixed-precision.md);"
                f" choose from {', '.join(BY_NAME[lacking[0]].precisions)}"
            )
