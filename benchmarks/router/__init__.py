"""Router benchmark: sluice-router (Envoy) against direct calls, nginx and HAProxy.

Run ``python -m benchmarks.router setup`` once (wrk, nginx, HAProxy from Debian), then
``python -m benchmarks.router run``; see docs/router-performance.md.
"""
