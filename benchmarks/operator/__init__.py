"""Operator benchmark: N InferenceServices on a local cluster of fake GPU nodes.

Run with ``python -m benchmarks.operator --count 100``; see ``docs/operator.md`` for figures.
"""
