"""Benchmarks: run by `make bench`, results written to bench/results/*.json (never timed assertions in tests)."""
