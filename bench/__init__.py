"""Benchmarks of Convoy against the machine's limits (issue #9): ``make bench`` / ``python -m bench``."""
