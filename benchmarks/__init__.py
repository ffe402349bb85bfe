"""Benchmarks of lstmconvert against what users do today: ``python benchmarks/run.py --help``."""
