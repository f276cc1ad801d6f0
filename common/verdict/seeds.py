"""--seeds: every framework once per seed, each seed exactly a single run, then the statistics.

Each seed runs what `compare.py --seed S --out DIR/seed-S` would (common.run.launch.run_all), so
its probes, weights, logs, results.json and per-seed parity checks live in DIR/seed-S/, and a
framework crashing on one seed loses nothing else. The top-level results.json keeps every run
(framework x seed, each with its `seed`), every per-seed verdict, and the statistics.

The overall verdict of a multi-seed run:
- DISAGREE when a per-seed parity check failed on any seed, or a pair of frameworks is
  "different" on a metric (common.verdict.stats);
- AGREE when every per-seed check passed and every pair is "equivalent" on test accuracy and
  on test loss, over the seeds that every compared framework finished;
- UNDETERMINED otherwise (too few seeds for the spread): it says how many seeds would settle
  it, and compare.py exits 1, since agreement was not shown;
- NOT COMPARED, as for a single run, when fewer than two frameworks finished anything.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from typing import Any

from common import results
from common.config import DOCUMENTED_ACCURACY, MnistConfig, RunConfig
from common.errors import UserError
from common.run import launch
from common.verdict import parity

MAX_SEEDS = 100
SEED_MAX = 2**32 - 1  # as --seed: NumPy's legacy seeding and JAX's key take 32 bits
ITEM = re.compile(r"(-?\d+)(?:-(-?\d+))?")
# (key in statistics, run field, label, unit factor): accuracy is compared in points.
METRICS = (("accuracy", "test_accuracy", "test accuracy", 100.0), ("loss", "test_loss", "test loss", 1.0))


def parse(text: str) -> tuple[int, ...]:
    """'0-4' or '0,1,2' (or both: '0-2,7') into seeds, refusing what cannot be meant."""
    bounds = []
    for item in text.split(","):
        match = ITEM.fullmatch(item.strip())
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise UserError(f"--seeds: {text!r} is not a seed list (use 0-4 or 0,1,2)")
        first = int(match[1])
        bounds.append((first, int(match[2]) if match[2] is not None else first))
    for first, last in bounds:
        for seed in (first, last):
            if not 0 <= seed <= SEED_MAX:
                raise UserError(f"--seeds: seeds must be between 0 and {SEED_MAX}, got {seed}")
    count = sum(last - first + 1 for first, last in bounds)  # before expanding '0-4000000000'
    if count > MAX_SEEDS:
        raise UserError(f"--seeds: at most {MAX_SEEDS} seeds, got {count}")
    seeds: list[int] = []
    for first, last in bounds:
        for seed in range(first, last + 1):
            if seed in seeds:
                raise UserError(f"--seeds: seed {seed} appears twice")
            seeds.append(seed)
    return tuple(seeds)


def check(cfg: RunConfig) -> None:
    """Refuse what repeating over seeds cannot do, while the config is built."""
    if not cfg.seeds:
        return
    if cfg.task != "mnist":
        raise UserError(
            "--seeds repeats MNIST training; the plane fit is float64 with identical paths in every framework, "
            "so one --seed shows its agreement"
        )
    if cfg.benchmark:
        raise UserError("--seeds repeats training and --benchmark times steps: choose one")
    if cfg.mnist.eval_params:
        raise UserError("--seeds repeats training and --eval-params scores one checkpoint: choose one")
    if cfg.parallel.devices > 1:  # each seed would also check its engine against one device: not yet supported
        raise UserError("--seeds with --devices is not supported yet: check the engines on one --seed")


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The single run of one seed, in its own directory."""
    return replace(cfg, seed=seed, seeds=(), out=str(cfg.out_dir / seed_dir(seed)))


def seed_dir(seed: int) -> str:
    return f"seed-{seed}"


def progress(cfg: RunConfig, text: str) -> None:
    if not cfg.quiet:
        print(text, file=sys.stderr, flush=True)


def run_all(cfg: RunConfig, env: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Run every seed in turn; return the document and whether Ctrl-C stopped it.

    After Ctrl-C the running seed keeps what finished and every later seed is recorded as
    interrupted, so results.json still says what was and was not run.
    """
    done: list[dict[str, Any]] = []
    interrupted = False
    for i, seed in enumerate(cfg.seeds):
        if interrupted:
            runs = stopped(cfg.frameworks)
            done.append({"seed": seed, "runs": runs, "parity": parity.verdict([], runs)})
            continue
        progress(cfg, f"seed {seed} ({i + 1} of {len(cfg.seeds)})")
        item, interrupted = run_seed(seed_config(cfg, seed), env)
        done.append(item)
        progress(cfg, f"seed {seed}: {parity.headline(item['parity'])}")
    return assemble(cfg, env, done), interrupted


def run_seed(scfg: RunConfig, env: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Exactly a single run of one seed (its results.json included); and whether Ctrl-C stopped it."""
    interrupted = False
    try:
        runs = launch.run_all(scfg)
    except launch.Interrupted as stop:
        runs, interrupted = stop.runs, True
    except KeyboardInterrupt:  # between two frameworks' processes
        runs, interrupted = stopped(scfg.frameworks), True
    verdict = parity.mnist_parity(scfg, runs)
    results.write(scfg.out_dir, results.build("mnist", scfg.to_dict(), env, runs, verdict, profile=scfg.profile))
    return {"seed": scfg.seed, "runs": runs, "parity": verdict}, interrupted


def stopped(frameworks: tuple[str, ...]) -> list[dict[str, Any]]:
    return [results.not_run(f, "interrupted", "stopped by Ctrl-C") for f in frameworks]


def assemble(cfg: RunConfig, env: dict[str, Any], done: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level document from each seed's runs and verdict ({seed, runs, parity})."""
    runs = [{**located(run, item["seed"]), "seed": item["seed"]} for item in done for run in item["runs"]]
    statistics = compute(cfg, runs)
    seeds = [{"seed": item["seed"], "dir": seed_dir(item["seed"]), "parity": item["parity"]} for item in done]
    verdict = overall_verdict(cfg, seeds, runs, statistics)
    doc = results.build("mnist", cfg.to_dict(), env, runs, verdict, profile=cfg.profile)
    return {**doc, "seeds": seeds, "statistics": statistics}


def located(run: dict[str, Any], seed: int) -> dict[str, Any]:
    """A seed's file paths made relative to the top-level directory."""
    out = dict(run)
    for key in ("params", "logits"):
        if isinstance(out.get(key), str):
            out[key] = f"{seed_dir(seed)}/{out[key]}"
    return out


def compared(cfg: RunConfig, runs: list[dict[str, Any]]) -> list[str]:
    """Frameworks that finished at least one seed, in the requested order."""
    return [f for f in cfg.frameworks if any(r["framework"] == f and r["status"] == "ok" for r in runs)]


def common_seeds(cfg: RunConfig, runs: list[dict[str, Any]], names: list[str]) -> tuple[list[int], list[str]]:
    """Seeds every compared framework finished, and why each other seed was left out."""
    used, excluded = [], []
    for seed in cfg.seeds:
        gone = [r for r in runs if r["seed"] == seed and r["framework"] in names and r["status"] != "ok"]
        if gone:
            excluded.append(f"seed {seed}: " + ", ".join(f"{r['framework']} {r['status']}" for r in gone))
        else:
            used.append(seed)
    return used, excluded


def compute(cfg: RunConfig, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The statistics section of results.json (imports SciPy only here: single runs skip its start-up)."""
    from common.verdict import stats

    names = compared(cfg, runs)
    used, excluded = common_seeds(cfg, runs, names)
    value = {(r["seed"], r["framework"]): r for r in runs if r["status"] == "ok"}
    margins = {"accuracy": cfg.margins.accuracy_points, "loss": cfg.margins.test_loss}
    metrics = {}
    for key, field, label, scale in METRICS:
        matrix = [[scale * value[s, f][field] for f in names] for s in used]
        metrics[key] = {"label": label, "unit": "points" if scale == 100.0 else "", "margin": margins[key]}
        metrics[key].update(metric_statistics(matrix, names, margins[key]))
    target = None
    if at_defaults(cfg):
        points = 100 * DOCUMENTED_ACCURACY
        per = {f: stats.reaching([100 * value[s, f]["test_accuracy"] for s in used], points) for f in names}
        target = {"accuracy_points": points, "per_framework": per}
    return {
        "seeds": list(cfg.seeds),
        "used": used,
        "excluded": excluded,
        "frameworks": names,
        "metrics": metrics,
        "target": target,
    }


def metric_statistics(matrix: list[list[float]], names: list[str], margin: float) -> dict[str, Any]:
    """matrix[seed][framework] of one metric: per framework, per pair, variation, against the others."""
    from common.verdict import stats

    column = {f: [row[j] for row in matrix] for j, f in enumerate(names)}
    pairs = [
        {"a": a, "b": b, **stats.compare_pair(column[a], column[b], margin)}
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return {
        "per_framework": {f: stats.summary(column[f]) for f in names},
        "pairs": pairs,
        "variation": stats.variation(matrix),
        "against_others": stats.against_others(matrix, names) if len(names) > 2 else {},
    }


def at_defaults(cfg: RunConfig) -> bool:
    """The documented accuracy is a claim about the default training only."""
    defaults = MnistConfig()
    return replace(cfg.mnist, log_every=defaults.log_every, eval_batch_size=defaults.eval_batch_size) == defaults


def merged_checks(seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each per-seed check once: its worst value over the seeds, failing if it failed on any seed."""
    by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for item in seeds:
        for c in item["parity"]["checks"]:
            by_name.setdefault(c["name"], []).append((item["seed"], c))
    merged = []
    for entries in by_name.values():
        seed, worst = max(entries, key=lambda e: (not e[1]["passed"], e[1]["value"]))
        detail = f"seed {seed}: {worst['detail']}" if worst.get("detail") else f"seed {seed}"
        merged.append({**worst, "passed": all(c["passed"] for _, c in entries), "detail": detail})
    return merged


def overall_verdict(
    cfg: RunConfig, seeds: list[dict[str, Any]], runs: list[dict[str, Any]], statistics: dict[str, Any]
) -> dict[str, Any]:
    """Per-seed checks on every seed, then the equivalence of every pair (module docstring)."""
    names = statistics["frameworks"]
    by_framework = [
        {"framework": f, "status": "ok" if f in names else next(r["status"] for r in runs if r["framework"] == f)}
        for f in cfg.frameworks
    ]
    checks = merged_checks(seeds)
    note = f"{seeds[0]['parity'].get('note') or 'per-seed checks'}; each check's worst seed" if seeds else ""
    verdict = parity.verdict(checks, by_framework, note=note)
    if verdict["status"] == parity.AGREE:
        verdict["status"], verdict["reason"] = statistical_status(statistics)
    elif verdict["status"] == parity.DISAGREE:
        failed = next(c for c in checks if not c["passed"])
        verdict["reason"] = f"{failed['name']} failed ({failed['detail']})"
        parting = [(item["seed"], item["parity"].get("reason", "")) for item in seeds]
        staged = [(seed, reason) for seed, reason in parting if reason.startswith("at ")]
        if staged:  # a float64 stage parted: say where, as a single run does
            verdict["reason"] = f"{staged[0][1]}; seed {staged[0][0]}"
    verdict["passed"] = verdict["status"] == parity.AGREE
    return verdict


def statistical_status(statistics: dict[str, Any]) -> tuple[str, str]:
    """AGREE, DISAGREE or UNDETERMINED from the pairs' equivalence verdicts, with the reason."""
    n = len(statistics["used"])
    over = f"over {n} of {len(statistics['seeds'])} seeds"
    pairs = [(m, p) for m in statistics["metrics"].values() for p in m["pairs"]]
    different = [(m, p) for m, p in pairs if p["verdict"] == "different"]
    if different:
        m, p = different[0]
        return parity.DISAGREE, f"{p['a']} vs {p['b']} {m['label']} different {over} ({difference_text(m, p)})"
    open_ = [(m, p) for m, p in pairs if p["verdict"] != "equivalent"]
    if not open_:
        margins = " and ".join(margin_text(m) for m in statistics["metrics"].values())
        return parity.AGREE, f"every pair equivalent within {margins} {over}"
    if n < 2:
        finished = "no seed" if n == 0 else "only 1 seed"
        return parity.UNDETERMINED, f"{finished} finished in every framework: no interval; run more seeds"
    needs = [p["seeds_needed"] for _, p in open_]
    worst_m, worst_p = max(open_, key=lambda mp: mp[1]["seeds_needed"] or MAX_SEEDS + 1)
    settle = f"more than {MAX_SEEDS} seeds" if None in needs else f"about {max(needs)} seeds"
    return parity.UNDETERMINED, (
        f"agreement not shown {over}; {settle} would settle it ({worst_p['a']} vs {worst_p['b']}, {worst_m['label']})"
    )


def margin_text(metric: dict[str, Any]) -> str:
    return f"±{metric['margin']:g}{' points' if metric['unit'] else ''} of {metric['label']}"


def difference_text(metric: dict[str, Any], pair: dict[str, Any]) -> str:
    unit = " points" if metric["unit"] else ""
    lo, hi = pair["ci95"]
    return f"{pair['mean']:+.3g}{unit}, 95% interval {lo:+.3g} to {hi:+.3g}, margin ±{metric['margin']:g}"
