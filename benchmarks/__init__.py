"""Runnable speed and memory measurements; numbers and commands in benchmarks/README.md."""
