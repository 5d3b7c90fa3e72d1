"""Where the runtime listens, and the ports of the Service in front of it.

The runtime's ``--http-port`` and ``--grpc-port`` default to ``HTTP_PORT`` and ``GRPC_PORT``
(``flags``); the operator writes the same numbers into the pod's command line and container
ports, names the container ports ``HTTP`` and ``GRPC`` so probes and Services refer to them
by name, and probes ``READY_PATH`` and ``LIVE_PATH``. Prometheus scrapes ``METRICS_PATH`` on
the HTTP port. The router sends a variant's traffic to its Service on ``SERVICE_HTTP_PORT``
and ``SERVICE_GRPC_PORT``. NVIDIA Triton pods use the same two ports (docs/api.md), and so do
the router pods in front of them.
"""

from __future__ import annotations

from typing import Final

# The runtime's container ports and their names.
HTTP_PORT: Final = 8080
GRPC_PORT: Final = 8081
HTTP: Final = "http"
GRPC: Final = "grpc"

# The ports of an InferenceService's Services; each targets the container port of its name.
SERVICE_HTTP_PORT: Final = 80
SERVICE_GRPC_PORT: Final = 8081

# The Open Inference Protocol's health endpoints and the Prometheus endpoint, on HTTP_PORT.
READY_PATH: Final = "/v2/health/ready"
LIVE_PATH: Final = "/v2/health/live"
METRICS_PATH: Final = "/metrics"

# The router pods listen for clients on HTTP_PORT and GRPC_PORT, with the same port names, so
# the stable Service selects either the router pods or a variant's runtime pods unchanged.
# Their Prometheus metrics and readiness are served apart, on ROUTER_METRICS_PORT (named
# ROUTER_METRICS) at METRICS_PATH and ROUTER_READY_PATH.
ROUTER_METRICS_PORT: Final = 9090
ROUTER_METRICS: Final = "metrics"
ROUTER_READY_PATH: Final = "/ready"
