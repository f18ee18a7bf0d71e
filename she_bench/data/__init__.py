"""Benchmark data: importing this package registers every loader."""
from she_bench.data import esci, files, toyshop, wands  # noqa: F401
