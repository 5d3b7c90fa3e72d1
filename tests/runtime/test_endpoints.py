"""The runtime answers where the operator's probes and Prometheus look (sluice.contracts.ports).

The operator probes ``READY_PATH`` and ``LIVE_PATH`` and annotates pods for scraping at
``METRICS_PATH``, all on the HTTP port; this is the runtime's side of that contract, on a
real server with real models.
"""

from __future__ import annotations

import http.client

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sluice.contracts import metrics, ports
from sluice.runtime.app import RuntimeApp


def get(server: RuntimeApp, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", [ports.READY_PATH, ports.LIVE_PATH])
def test_the_probed_health_paths_answer(server: RuntimeApp, path: str) -> None:
    assert get(server, path)[0] == 200


def test_the_scraped_path_exports_every_contract_metric(server: RuntimeApp) -> None:
    status, body = get(server, ports.METRICS_PATH)
    assert status == 200
    families = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {metric.family for metric in metrics.RUNTIME_METRICS} <= families
