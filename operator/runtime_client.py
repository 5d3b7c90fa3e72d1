"""The one module that talks to runtime pods: it asks one for a model's execution provider.

Called by the provider workers through ``providers.Providers.ask`` (wired in ``running.py``),
never by a reconcile run. ``GET /v2/models/MODEL`` on the pod's HTTP port returns the Open
Inference Protocol's model metadata, in which Sluice's runtime names the onnxruntime execution
provider it really uses under ``parameters.execution_provider`` (runtime/model.py). Timeouts
are short: the pod is Ready, so an answer is a matter of milliseconds, and a pod that is slow
or unreachable is asked again later rather than waited for. Every failure leaves as a
``TemporaryError``; a 4xx or an answer without the field is an answer: no provider.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3

from .errors import TemporaryError

# The model metadata parameter the runtime names its execution provider in.
EXECUTION_PROVIDER = "execution_provider"
# (connect, read) seconds.
TIMEOUT = urllib3.Timeout(connect=1.0, read=2.0)
# Model metadata is a few hundred bytes; an answer larger than this is not one.
MAX_BYTES = 1 << 20
USER_AGENT = "sluice-operator/0.1.0"


class RuntimeClient:
    """Asks runtime pods over plain HTTP; ``pools`` caps the connection pools kept (each pod
    is asked once, so connections are seldom reused)."""

    def __init__(self, *, pools: int = 8, timeout: urllib3.Timeout = TIMEOUT) -> None:
        self._http = urllib3.PoolManager(num_pools=pools, timeout=timeout, retries=False)

    def provider(self, host: str, port: int, model: str) -> str | None:
        """The execution provider the runtime at ``host:port`` uses for ``model``; None when
        it answers without one (a Triton server, an older runtime, a model it lacks)."""
        address = f"[{host}]" if ":" in host else host  # IPv6
        url = f"http://{address}:{port}/v2/models/{quote(model, safe='')}"
        try:
            response = self._http.request(
                "GET", url, headers={"User-Agent": USER_AGENT}, preload_content=False
            )
            try:
                body = response.read(MAX_BYTES + 1)
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TemporaryError(f"GET {url}: {exc}", delay=0.0) from exc
        if response.status >= 500:
            raise TemporaryError(f"GET {url}: HTTP {response.status}", delay=0.0)
        if response.status >= 300 or len(body) > MAX_BYTES:
            return None
        return _provider(body)

    def close(self) -> None:
        """Close every pooled connection."""
        self._http.clear()


def _provider(body: bytes) -> str | None:
    """``parameters.execution_provider`` of a metadata document, or None."""
    try:
        metadata: Any = json.loads(body)
    except ValueError:
        return None
    parameters = metadata.get("parameters") if isinstance(metadata, dict) else None
    found = parameters.get(EXECUTION_PROVIDER) if isinstance(parameters, dict) else None
    return found if isinstance(found, str) and found else None
