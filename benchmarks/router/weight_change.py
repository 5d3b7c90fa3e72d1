"""How long a weight change takes to reach the traffic: sluice-router's part of it.

In a cluster the operator writes the new route table into the router's ConfigMap and the
router watches it; in standalone mode the router watches a file. ``measure`` rewrites the
routes file from one split to its mirror image (90/10 to 10/90 and back) and sends requests
back to back on one keep-alive connection, reading each answer's variant header, until the
variant that gained weight answers at least half of the last ``window`` requests. The time
from the rename to the answer that completes that window is the sample: an upper bound, late
by at most ``window`` requests (the window needs that many answers of the new split).
"""

from __future__ import annotations

import http.client
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from sluice.contracts.routes import VARIANT_HEADER

from benchmarks.router import configs
from benchmarks.router.configs import Upstream
from benchmarks.router.proxies import write_atomically
from benchmarks.runtime.procs import LOOPBACK

WINDOW = 20
TIMEOUT_S = 10.0
SETTLE_S = 0.3


def measure(
    port: int,
    routes: Path,
    upstreams: Sequence[Upstream],
    path: str,
    body: bytes,
    changes: int,
) -> list[float]:
    """Seconds from each of ``changes`` route table rewrites to its split in effect."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=TIMEOUT_S)
    current = list(upstreams)
    samples = []
    try:
        for _ in range(changes):
            current = [Upstream(u.variant, u.http_port, 100 - u.weight) for u in current]
            gaining = max(current, key=lambda u: u.weight).variant
            time.sleep(SETTLE_S)  # the previous split's requests are done with
            samples.append(_one_change(connection, routes, current, gaining, path, body))
    finally:
        connection.close()
    return samples


def _one_change(
    connection: http.client.HTTPConnection,
    routes: Path,
    upstreams: Sequence[Upstream],
    gaining: str,
    path: str,
    body: bytes,
) -> float:
    """Write the new table, then poll until ``gaining`` answers half of the last requests."""
    recent: deque[bool] = deque(maxlen=WINDOW)
    written = time.monotonic()
    write_atomically(routes, configs.route_table(upstreams))
    while time.monotonic() - written < TIMEOUT_S:
        recent.append(_variant(connection, path, body) == gaining)
        if len(recent) == WINDOW and 2 * sum(recent) >= WINDOW:
            return time.monotonic() - written
    raise TimeoutError(f"{gaining} did not take over within {TIMEOUT_S:.0f} s")


def _variant(connection: http.client.HTTPConnection, path: str, body: bytes) -> str:
    """POST ``body`` to ``path``; the variant that answered (a non-200 answer is an error)."""
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"POST {path}: {answer.status} {answer.reason}")
    return answer.getheader(VARIANT_HEADER, "")
