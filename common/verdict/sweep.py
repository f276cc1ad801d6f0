"""How often does each check fail on correct code? The checks that need no training, over many seeds.

    python -m common.verdict.sweep --seeds 0-49 --train-limit 5000   # the 5,000-example subsets of 50 seeds
    python -m common.verdict.sweep --seeds 0-49                      # the full training set

Each seed changes the shared start, the training subset and the batch order, so each is a new
first batch for the float64 stages and the float32 first-step checks. Every framework runs once
(one worker, common.run.launch) through every seed without training, writing what a run of that
seed writes (seed-S/stages, seed-S/probes); the checks are then applied exactly as compare.py
applies them, and the table counts the seeds on which each one failed. On code whose ports are
correct every count should be 0: a check that fails there is a false alarm.

The checks after training (test accuracy and loss) need the whole run:
`python compare.py --task mnist --seeds 0-49 --epochs 1 --train-limit 5000` reports each one's
worst seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import table
from common.config import FRAMEWORKS, MnistConfig, RunConfig, default_lr
from common.errors import UserError
from common.io import atomic_write_json
from common.run import launch
from common.run.fetch import prepare_data
from common.verdict import parity, seeds


def seed_checks(cfg: RunConfig, seed: int, ok: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One seed's stage and first-step checks, as mnist_parity makes them (strict profile)."""
    out = cfg.out_dir / f"seed-{seed}"
    table = parity.stage_table(out, ok, cfg.mnist.optimizer)
    return parity.stage_checks(table) + parity.probe_checks(out, ok, parity.STRICT32)


def tally(per_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per check: on how many seeds it failed, which, and its worst value with that seed and pair."""
    rows: dict[str, dict[str, Any]] = {}
    for seed, checks in per_seed.items():
        for c in checks:
            row = rows.setdefault(c["name"], {"name": c["name"], "tolerance": c["tolerance"], "failed": [], "worst": c})
            if not c["passed"]:
                row["failed"].append(seed)
            if c["value"] >= row["worst"]["value"]:
                row["worst"] = {**c, "detail": f"seed {seed}: {c['detail']}"}
    return list(rows.values())


def text(rows: list[dict[str, Any]], n: int) -> str:
    columns = ("check", "false alarms", "worst value", "tolerance", "worst seed")
    body = [
        [
            r["name"],
            f"{len(r['failed'])} of {n}" + (f" (seeds {', '.join(map(str, r['failed']))})" if r["failed"] else ""),
            f"{r['worst']['value']:.3g}",
            f"{r['tolerance']:.3g}",
            r["worst"]["detail"],
        ]
        for r in rows
    ]
    return table.text(columns, body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-49", help="seed list, as compare.py's --seeds (default 0-49)")
    p.add_argument("--train-limit", type=int, help="the first N examples of each seed's shuffled training set")
    p.add_argument("--batch-size", type=int, default=MnistConfig().batch_size)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="as compare.py's (Adam at lr 0.001)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--out", help="output directory (default runs/sweep-<timestamp>)")
    args = p.parse_args(argv)
    try:
        seed_list = seeds.parse(args.seeds)
        out = Path(args.out or f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
        lr = default_lr(args.optimizer)
        mnist = MnistConfig(train_limit=args.train_limit, batch_size=args.batch_size, optimizer=args.optimizer, lr=lr)
        names = tuple(n.strip() for n in args.frameworks.split(",") if n.strip())
        cfg = RunConfig(task="mnist", frameworks=names, seeds=seed_list, out=str(out), quiet=True, mnist=mnist)
        cfg = prepare_data(replace(cfg, checks_only=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    runs = launch.run_all(cfg)
    ok = [r for r in runs if r["status"] == "ok"]
    for r in runs:
        if r["status"] != "ok":
            print(f"{r['framework']}: {r['status']}: {r.get('error', '')}", file=sys.stderr)
    if len(ok) < 2:
        print("NOT COMPARED: fewer than two frameworks finished", file=sys.stderr)
        return 1
    rows = tally({seed: seed_checks(cfg, seed, ok) for seed in seed_list})
    limit = f"the first {args.train_limit:,} examples" if args.train_limit else "the full training set"
    atomic_write_json(out / "sweep.json", {"config": cfg.to_dict(), "runs": runs, "checks": rows})
    finished = ", ".join(r["framework"] for r in ok)
    print(f"{len(seed_list)} seeds, {limit}, batch {args.batch_size}, {args.optimizer}, {finished}")
    print(text(rows, len(seed_list)))
    return 0 if all(not r["failed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
