"""Timing the frameworks against each other (--benchmark): the workers run, their windows pooled, goals, tables."""
