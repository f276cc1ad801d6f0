"""The speed goals the benchmark checks on the machine it runs on (never a timed test)."""

from __future__ import annotations

from typing import Any

from common.bench.summary import overlap

# The goals on the reference machine, checked by the benchmark (never by a timed test).
GOAL_OF_BLAS = 0.40  # each framework's training step reaches >= 40% of NumPy's fp32 matmul rate
GOAL_OF_FASTEST = 0.6  # the slowest framework runs at >= 0.6x the fastest
GOAL_VS_TEXTBOOK = 1.0  # this project's loop is no slower than the framework's textbook loop


def goals(bench: dict[str, Any]) -> tuple[tuple[str, ...], list[list[str]]]:
    """The speed goals, per batch size, for the project loop in the settings training runs use."""
    lines = []
    for batch in sorted({r["batch_size"] for r in bench["rows"]}):
        used = [
            r
            for r in bench["rows"]
            if r["batch_size"] == batch
            and r["loop"] == "project"
            and r["devices"] == 1  # the goals are about one device
            and bench["training_settings"] in r["stands_for"]
        ]
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
