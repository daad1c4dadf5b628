"""Micro benchmarks (pytest-benchmark) and the side-by-side runner against the peers."""
