"""Showing a finished run: report.md, curves.png, bench.png and the --seeds tables, from results.json alone."""
