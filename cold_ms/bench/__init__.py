"""Benchmarks behind `scripts/bench.py`: each sub-command prints numbers, never asserts."""
