"""Errors a user can cause; compare.py prints their one-line message and exits 2."""


class UserError(Exception):
    """Bad input: a wrong option, a missing or damaged file. The message says what to do."""
