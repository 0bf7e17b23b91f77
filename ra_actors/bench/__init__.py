"""Benchmark support: the ra_actors side, the PySyncObj and etcd reference
sides, client processes and shared statistics helpers.

Rules: benchmarks report speed, they never assert it; every process a
benchmark starts is stopped and reaped by that benchmark (by PID, never by
name).  Importing this package imports nothing heavy: PySyncObj is imported by
:mod:`ra_actors.bench.pysyncobj_bench` only.
"""
