"""Where one framework would run: `python -m frameworks.probe FRAMEWORK CONFIG`, the run's config as JSON.

compare.py's default (--device auto) puts every framework on one kind of device (common/run/placement.py): on a
machine where a framework could take a GPU it asks each framework first, in processes of their own, all at once.
The answer is the framework's own runtime.configure, the first thing its worker calls with the same config and
environment, so it is where the run would go. One line of JSON on stdout: {"device": "..."}.
"""

from __future__ import annotations

import importlib
import json
import sys

from common.config import RunConfig


def main(argv: list[str]) -> int:
    framework = argv[0]
    cfg = RunConfig.from_dict(json.loads(argv[1]))
    runtime = importlib.import_module(f"frameworks.{framework}.runtime")
    print(json.dumps({"device": runtime.configure(cfg)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
