"""Deciding agreement: the parity checks of one run and, across seeds, the statistics and equivalence."""
