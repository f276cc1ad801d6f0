"""Framework-neutral pieces, NumPy only, no framework imports.

The top level is the shared layer every framework package and its worker import; each subpackage
is the driver's machinery (compare.py, `make read`), which they may not import (tests/test_layout.py).
"""
