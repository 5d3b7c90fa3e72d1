"""What feeds the router its state: the route table and the variants' endpoints.

``sluice.router.__main__`` runs one ``Source`` on a thread and writes Envoy's configuration on
every call of ``on_change``. ``sluice.router.kube_source.KubeSource`` watches the route
table's ConfigMap and the variants' EndpointSlices; ``sluice.router.static_source.StaticSource``
reads two local files (standalone mode, tests and benchmarks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeAlias

from sluice.contracts.routes import RouteTable
from sluice.router.endpoints import Endpoints

# Called with the whole current state each time it changes; the table is None until one exists.
OnChange: TypeAlias = Callable[[RouteTable | None, Endpoints], None]


class Source(Protocol):
    """A producer of route tables and endpoints."""

    def run(self, on_change: OnChange, stop: threading.Event) -> None:
        """Call ``on_change`` with the whole state whenever it changes, until ``stop`` is set;
        then return. An error it cannot recover from is raised (the router exits with it)."""
        ...
