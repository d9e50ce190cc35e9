"""Benchmarks, kept out of the product package: `python -m bench api|analytics|users`."""
