"""Side-by-side benchmark of sluice-runtime against raw onnxruntime, PyTriton and KServe.

Run ``python -m benchmarks.runtime setup`` once, then
``.venv-bench/bin/python -m benchmarks.runtime run``; see docs/runtime-performance.md.
"""
