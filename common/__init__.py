"""Framework-neutral pieces, NumPy only, no framework imports.

The top level is the shared layer every framework package and its worker import; each subpackage
is the driver's machinery, which only compare.py and the driver use (tests/test_layout.py).
"""
