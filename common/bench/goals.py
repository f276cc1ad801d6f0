"""The speed goals the benchmark checks on the machine it runs on (never a timed test)."""

from __future__ import annotations

from typing import Any

from common.bench.summary import goal_row, overlap
from common.environment import BFLOAT16_FLAGS

# The goals on the reference machine, checked by the benchmark (never by a timed test).
GOAL_OF_BLAS = 0.40  # each framework's training step reaches >= 40% of NumPy's fp32 matmul rate
GOAL_OF_FASTEST = 0.6  # the slowest framework runs at >= 0.6x the fastest
GOAL_VS_TEXTBOOK = 1.0  # this project's loop is no slower than the framework's textbook loop
# bfloat16 mixed precision against float32, images/s, on a CPU with AMX-BF16 or AVX512-BF16 (issue 19):
# oneDNN's bfloat16 kernels in PyTorch and TensorFlow; XLA's CPU emitter at least no slower in JAX.
GOAL_BFLOAT16 = {"pytorch": 1.7, "tensorflow": 1.7, "jax": 1.0}
BFLOAT16_UNITS = {flag.upper() for flag in BFLOAT16_FLAGS}  # as common.environment.vector_extensions names them
GOAL_COMPILED = 1.0  # torch.compile beats eager, or docs/performance.md keeps the measurement that shows why not


def goals(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The speed goals, per batch size, for the project loop in the settings that ran fastest here."""
    lines = []
    for batch in sorted({r["batch_size"] for r in bench["rows"]}):
        used = [
            r
            for r in bench["rows"]
            if r["batch_size"] == batch
            and r["loop"] == "project"
            and r["devices"] == 1  # the goals are about one device
            and goal_row(r)  # of the settings timed, the faster in this run
        ]
        lines += precision_goals(bench, batch)
        if not used:
            continue
        for r in used:
            blas = r["fraction_of_reference"]
            lines.append(
                [
                    str(batch),
                    f"{r['framework']} >= {GOAL_OF_BLAS:.0%} of CPU BLAS",
                    f"{blas:.0%}",
                    yes(blas >= GOAL_OF_BLAS),
                ]
            )
        slowest, fastest = min(used, key=rate), max(used, key=rate)
        share = rate(slowest) / rate(fastest)
        lines.append(
            [
                str(batch),
                f"slowest >= {GOAL_OF_FASTEST}x fastest",
                f"{slowest['framework']} {share:.2f}x",
                yes(share >= GOAL_OF_FASTEST, overlap(slowest, fastest)),
            ]
        )
        for r in used:
            if "relative_to_textbook" in r:
                value = r["relative_to_textbook"]
                met = yes(value >= GOAL_VS_TEXTBOOK, r["overlaps_textbook"])
                lines.append(
                    [str(batch), f"{r['framework']} >= {GOAL_VS_TEXTBOOK}x its textbook loop", f"{value:.2f}x", met]
                )
    return ("batch", "goal", "this run", "met"), lines


def rate(r: dict[str, Any]) -> float:
    return r["images_per_second"]


def yes(met: bool, within_noise: bool = False) -> str:
    return ("yes" if met else "no") + (" (within noise)" if within_noise and not met else "")


def precision_goals(bench: dict[str, Any], batch: int) -> list[list[str]]:
    """bfloat16 against float32, and the compiled step against the uncompiled one, per framework."""
    rows = [
        r
        for r in bench["rows"]
        if r["batch_size"] == batch
        and r["loop"] == "project"
        and r["devices"] == 1
        and r.get("fastest_settings_here", True)
    ]

    def find(framework: str, precision: str, compiled: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if r["framework"] == framework
                and r.get("precision", "float32") == precision
                and compiled in r.get("compile_stands_for", [r.get("compile", "off")])
            ),
            None,
        )

    lines = []
    for framework, goal in GOAL_BFLOAT16.items():
        base, mixed = find(framework, "float32", "off"), find(framework, "bfloat16", "off")
        if base and mixed:
            value = rate(mixed) / rate(base)
            met = yes(value >= goal, overlap(mixed, base))
            if mixed["device"] == "cpu" and not BFLOAT16_UNITS & set(bench["environment"]["vector_extensions"]):
                met = "n/a (the goal is for CPUs with AVX512_BF16 or AMX_BF16)"
            lines.append([str(batch), f"{framework} bfloat16 >= {goal}x its float32", f"{value:.2f}x", met])
    for precision in ("float32", "bfloat16"):
        eager, compiled = find("pytorch", precision, "off"), find("pytorch", precision, "on")
        if eager and compiled:
            value = rate(compiled) / rate(eager)
            met = yes(value >= GOAL_COMPILED, overlap(compiled, eager))
            lines.append([str(batch), f"torch.compile >= eager ({precision})", f"{value:.2f}x", met])
    return lines
