"""Where a variant's ready pods listen: the endpoints the router balances over.

A ``Source`` (``sluice.router.source``) reports them by Service name, the name a route table's
``Backend.service`` and ``Mirror.service`` give; ``sluice.router.envoy_config`` turns them into
Envoy's endpoint assignments, one per variant and protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class Endpoint:
    """One ready pod of a Service: its address and the ports named ``ports.HTTP`` and
    ``ports.GRPC``."""

    address: str  # a pod IP (127.0.0.1 in tests)
    http_port: int
    grpc_port: int

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("an endpoint needs an address")
        for port in (self.http_port, self.grpc_port):
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValueError(f"endpoint {self.address}: port {port!r} is not 1 to 65535")


# The ready endpoints of each Service, by Service name.
Endpoints: TypeAlias = Mapping[str, tuple[Endpoint, ...]]
