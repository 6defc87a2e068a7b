"""Benchmarks with recorded results (bench/results/); never timed assertions in tests."""
