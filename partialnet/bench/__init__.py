"""Benchmarks: protocols as data, the timing loop, statistics, subprocess isolation, results, compare.

Nothing here knows a specific runtime: runners come from `partialnet.runtimes`.
"""
