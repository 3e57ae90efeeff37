"""Benchmarks of the ranker: ``python -m rankswap_dev.bench_ranker`` (``make bench``).

See docs/BENCHMARKS.md for what each section measures and the numbers of the last full run.
"""
