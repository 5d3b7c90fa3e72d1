"""Route table and endpoints from two local files: the router without Kubernetes.

``sluice-router --routes-file FILE --endpoints-file FILE`` runs on this source (standalone
mode, the router tests and the benchmarks). The route file holds the table's JSON form
(``sluice.contracts.routes.to_json``); the endpoints file maps Service names to endpoints::

    {"NAME-main": [{"address": "10.0.0.7", "http_port": 8080, "grpc_port": 8081}]}

Both are re-read when their content changes. A file that becomes unreadable or invalid is
reported in one log line and the last good state stays in force.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from sluice.contracts.routes import RouteTable, from_json
from sluice.router.endpoints import Endpoint, Endpoints
from sluice.router.source import OnChange

log = logging.getLogger("sluice.router.source")

POLL_SECONDS: Final = 0.1
T = TypeVar("T")
U = TypeVar("U")


def parse_endpoints(text: str) -> dict[str, tuple[Endpoint, ...]]:
    """The endpoints file's content; ``ValueError`` says what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"endpoints: not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("endpoints: must be an object of Service names")
    found: dict[str, tuple[Endpoint, ...]] = {}
    for service, items in raw.items():
        if not isinstance(items, list):
            raise ValueError(f"endpoints: {service} must be a list")
        try:
            found[service] = tuple(Endpoint(**item) for item in items)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"endpoints: {service}: {exc}") from None
    return found


class StaticSource:
    """A ``Source`` reading ``routes_file`` and ``endpoints_file``."""

    def __init__(self, routes_file: Path, endpoints_file: Path) -> None:
        self.routes_file = routes_file
        self.endpoints_file = endpoints_file

    def read(self) -> tuple[RouteTable, Endpoints]:
        """Both files, parsed; ``OSError`` or ``ValueError`` says which one is unusable."""
        return from_json(self.routes_file.read_text()), parse_endpoints(
            self.endpoints_file.read_text()
        )

    def run(self, on_change: OnChange, stop: threading.Event) -> None:
        """Report the files' state now and after every change, until ``stop`` is set."""
        seen: tuple[_Read, _Read] | None = None
        table: RouteTable | None = None
        endpoints: Endpoints = {}
        while True:
            current = (_read(self.routes_file), _read(self.endpoints_file))
            if current != seen:
                seen = current
                new_table = _last_good(current[0], from_json, table, "route table")
                new_endpoints = _last_good(current[1], parse_endpoints, endpoints, "endpoints")
                if (new_table, new_endpoints) != (table, endpoints):
                    table, endpoints = new_table, new_endpoints
                    on_change(table, endpoints)
            if stop.wait(POLL_SECONDS):
                return


# A file's path and content, or its path, None and why it could not be read.
_Read: TypeAlias = tuple[Path, str | None, str]


def _read(path: Path) -> _Read:
    try:
        return path, path.read_text(), ""
    except OSError as exc:
        return path, None, exc.strerror or str(exc)


def _last_good(read: _Read, parse: Callable[[str], T], last: U, what: str) -> T | U:
    """The file ``read`` parsed, or ``last`` when it is unusable (said in one log line)."""
    path, text, error = read
    if text is not None:
        try:
            return parse(text)
        except ValueError as exc:
            error = str(exc)
    log.error("%s: %s; keeping the last good %s", path, error, what)
    return last
