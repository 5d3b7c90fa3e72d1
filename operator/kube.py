"""The one module that talks to the Kubernetes API (kopf's own watches aside).

Reconcile, status and leadership code call ``Kube``'s few verbs with plain dicts. Every
response is a plain dict decoded from JSON, and every failure leaves as the operator's own
``TemporaryError`` or ``PermanentError``, decided here once by HTTP status (see ``_classify``).
Paths are built from a small table of the kinds the operator touches, so no API discovery
requests are spent at start-up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config

from .errors import PermanentError, TemporaryError

FIELD_MANAGER = "sluice-operator"
USER_AGENT = "sluice-operator/0.1.0"
# (connect, read) seconds: a hung API server must not hold a worker thread for long.
REQUEST_TIMEOUT = (5.0, 30.0)
POOL_SIZE = 32  # more than kopf's worker threads (handlers.WORKERS)

Body = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None, sub: str = "") -> str:
        """The collection (no ``name``) or object path, with an optional subresource."""
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        if sub:
            parts.append(sub)
        return "/".join(parts)


KINDS: Mapping[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("serving.sluice.dev/v1alpha1", "InferenceService", "inferenceservices"),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("v1", "Service", "services"),
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "Pod", "pods"),
        Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("events.k8s.io/v1", "Event", "events"),
        Kind("coordination.k8s.io/v1", "Lease", "leases"),
    )
}


def kind_of(api_version: str, kind: str) -> Kind:
    """The table entry for a kind; an unknown kind is a programming error, hence permanent."""
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise PermanentError(f"the operator does not manage {kind} ({api_version})") from None


def _classify(status: int, reason: str, headers: Mapping[str, str] | None) -> Exception:
    """Decide, once, whether a failed request is worth retrying and after how long."""
    if status == 429:
        retry_after = (headers or {}).get("Retry-After", "")
        delay = float(retry_after) if retry_after.isdigit() else 5.0
        return TemporaryError(f"throttled by the API server: {reason}", delay=delay)
    if status == 409:
        return TemporaryError(f"conflict: {reason}", delay=1.0)
    if status >= 500 or status == 0:
        return TemporaryError(f"API server error {status}: {reason}", delay=5.0)
    if status in (401, 403):
        # RBAC can be fixed without touching the resource: retry, slowly.
        return TemporaryError(f"not permitted ({status}): {reason}", delay=30.0)
    return PermanentError(f"rejected ({status}): {reason}", status=status)


def _reason(data: bytes, fallback: str) -> str:
    """The API server's Status message, or the HTTP reason when the body is not a Status."""
    try:
        decoded = json.loads(data)
    except ValueError:
        return fallback
    message = decoded.get("message") if isinstance(decoded, dict) else None
    return str(message) if message else fallback


class Kube:
    """A synchronous client for the operator's few verbs; safe to share between threads."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._api.user_agent = USER_AGENT
        self._lock = threading.Lock()
        self.requests = 0  # requests sent through this client, for logs and benchmarks

    @classmethod
    def connect(cls, kubeconfig: Path | None) -> Kube:
        """In-cluster credentials by default; a kubeconfig file when one is given."""
        configuration = client.Configuration()
        # One pooled connection per worker thread: a fresh TLS handshake per request would
        # cost both sides more than the request itself.
        configuration.connection_pool_maxsize = POOL_SIZE
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call,unused-ignore]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call,unused-ignore]
                config_file=str(kubeconfig), client_configuration=configuration
            )
        return cls(client.ApiClient(configuration))

    @property
    def configuration(self) -> client.Configuration:
        """The resolved connection settings (host, CA, credentials), shared with kopf's login."""
        configuration: client.Configuration = self._api.configuration
        return configuration

    def credentials(self) -> dict[str, Any]:
        """The same connection and credentials in the shape of ``kopf.ConnectionInfo``'s
        arguments, so kopf's watches authenticate exactly as this client does."""
        cfg = self._api.configuration
        header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
            "authorization"
        )
        parts = (header or "").split(" ", 1)
        scheme, token = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return {
            "server": cfg.host,
            "ca_path": cfg.ssl_ca_cert,
            "insecure": not cfg.verify_ssl,
            "scheme": scheme,
            "token": token or None,
            "certificate_path": cfg.cert_file,
            "private_key_path": cfg.key_file,
        }

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Body | None = None,
        content_type: str = "application/json",
    ) -> Body | None:
        """Send one request; a decoded body, None for 404 on GET, else an operator error."""
        url = self._api.configuration.host + path
        if query:
            url += "?" + urlencode(query)
        headers: dict[str, str] = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = content_type
        self._api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        payload = json.dumps(body) if body is not None else None
        with self._lock:
            self.requests += 1
        try:
            response = self._api.rest_client.pool_manager.request(
                method,
                url,
                body=payload,
                headers=headers,
                timeout=urllib3.Timeout(connect=REQUEST_TIMEOUT[0], read=REQUEST_TIMEOUT[1]),
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TemporaryError(f"{method} {path}: {exc}", delay=5.0) from None
        data: bytes = response.data
        if response.status == 404 and method == "GET":
            return None
        if response.status >= 400:
            reason = _reason(data, str(response.reason))
            error = _classify(response.status, f"{method} {path}: {reason}", response.headers)
            raise error
        decoded: Body = json.loads(data) if data else {}
        return decoded

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        """The object, or None when it does not exist."""
        return self._request("GET", kind_of(api_version, kind).path(namespace, name))

    def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[Body]:
        """Items of a kind in one namespace (or all, with None), optionally by label."""
        query = {"labelSelector": label_selector} if label_selector else None
        found = self._request("GET", kind_of(api_version, kind).path(namespace), query=query)
        items: list[Body] = (found or {}).get("items", [])
        return items

    def apply(self, obj: Body) -> Body:
        """Server-side apply under the operator's one field manager, taking over its fields."""
        meta = obj["metadata"]
        path = kind_of(obj["apiVersion"], obj["kind"]).path(meta.get("namespace"), meta["name"])
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        applied = self._request(
            "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
        )
        assert applied is not None  # only GET answers None
        return applied

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Body
    ) -> Body:
        """Merge-patch ``status`` through the status subresource."""
        path = kind_of(api_version, kind).path(namespace, name, "status")
        patched = self._request(
            "PATCH",
            path,
            body={"status": status},
            content_type="application/merge-patch+json",
        )
        assert patched is not None
        return patched

    def create(self, obj: Body) -> Body:
        """Create an object; 409 (already exists) is a TemporaryError like any conflict."""
        path = kind_of(obj["apiVersion"], obj["kind"]).path(obj["metadata"].get("namespace"))
        created = self._request("POST", path, body=obj)
        assert created is not None
        return created

    def replace(self, obj: Body) -> Body:
        """Replace an object; its ``metadata.resourceVersion`` makes this compare-and-swap."""
        meta = obj["metadata"]
        path = kind_of(obj["apiVersion"], obj["kind"]).path(meta.get("namespace"), meta["name"])
        replaced = self._request("PUT", path, body=obj)
        assert replaced is not None
        return replaced

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()  # type: ignore[no-untyped-call,unused-ignore]
