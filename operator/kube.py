"""The one module that talks to the Kubernetes API (kopf's own watches aside).

Reconcile, status and leadership code call ``Kube``'s few verbs with plain dicts. Every
response is a plain dict decoded from JSON, and every failure leaves as the operator's own
``TemporaryError`` or ``PermanentError``, decided here once by HTTP status (see ``_classify``).
Paths are built from a small table of the kinds the operator touches, so no API discovery
requests are spent at start-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml
from kubernetes import client, config
from sluice.contracts import api

from .errors import PermanentError, StartupError, TemporaryError

FIELD_MANAGER = "sluice-operator"
USER_AGENT = "sluice-operator/0.1.0"
# (connect, read) seconds: a hung API server must not hold a worker thread for long.
REQUEST_TIMEOUT = (5.0, 30.0)
POOL_SIZE = 80  # more than the reconcile workers (running.WORKERS) and the Lease renewal

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
        Kind(api.API_VERSION, api.KIND, api.PLURAL),
        Kind("apps/v1", "Deployment", "deployments"),
        Kind("v1", "Service", "services"),
        Kind("v1", "ConfigMap", "configmaps"),
        Kind("v1", "ServiceAccount", "serviceaccounts"),
        Kind("rbac.authorization.k8s.io/v1", "Role", "roles"),
        Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute", "httproutes"),
        Kind("gateway.networking.k8s.io/v1", "GRPCRoute", "grpcroutes"),
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


# Where a pod's ServiceAccount token is mounted; its presence (with the service environment
# variables) means the process runs in a cluster.
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class ConfigSource:
    """Where the connection settings come from: kubeconfig ``files`` merged in order (the
    first file to define a name wins, as in kubectl), or the pod's ServiceAccount when
    ``files`` is empty. ``context`` is the current context kubectl would use."""

    origin: str
    files: tuple[Path, ...] = ()
    context: str | None = None

    def __str__(self) -> str:
        paths = os.pathsep.join(str(path) for path in self.files)
        return f"{self.origin} ({paths})" if paths else self.origin


def resolve_config(
    flag: Path | None,
    environ: Mapping[str, str],
    *,
    home: Path,
    token_file: Path = IN_CLUSTER_TOKEN,
) -> ConfigSource:
    """Pick the credentials as kubectl and controller-runtime do: the ``--kubeconfig`` file,
    else every existing file listed in ``$KUBECONFIG``, else the pod's ServiceAccount, else
    ``~/.kube/config``. Raises ``StartupError`` when there is none."""
    if flag is not None:
        if not flag.is_file():
            raise StartupError(f"--kubeconfig {flag}: no such file")
        return ConfigSource("--kubeconfig", (flag,), _current_context((flag,)))
    listed = environ.get("KUBECONFIG", "")
    if listed:
        named = [Path(entry).expanduser() for entry in listed.split(os.pathsep) if entry]
        files = tuple(path for path in named if path.is_file())
        if not files:
            raise StartupError(f"$KUBECONFIG={listed} names no existing file")
        return ConfigSource("$KUBECONFIG", files, _current_context(files))
    if (
        environ.get("KUBERNETES_SERVICE_HOST")
        and environ.get("KUBERNETES_SERVICE_PORT")
        and token_file.is_file()
    ):
        return ConfigSource("in-cluster ServiceAccount")
    default = home / ".kube" / "config"
    if default.is_file():
        return ConfigSource("~/.kube/config", (default,), _current_context((default,)))
    raise StartupError(
        "no Kubernetes credentials: pass --kubeconfig FILE, set $KUBECONFIG, run in a pod "
        "with a ServiceAccount, or create ~/.kube/config"
    )


def _current_context(files: tuple[Path, ...]) -> str | None:
    """The first ``current-context`` set in ``files``, kubectl's rule (the kubernetes client
    alone would take the last one)."""
    for path in files:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise StartupError(f"kubeconfig {path}: {exc}") from None
        context = loaded.get("current-context") if isinstance(loaded, dict) else None
        if context:
            return str(context)
    return None


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

    @classmethod
    def connect(cls, source: ConfigSource) -> Kube:
        """A client for the cluster and credentials that ``source`` names (see
        ``resolve_config``); ``StartupError`` when they cannot be used."""
        configuration = client.Configuration()
        # One pooled connection per worker thread: a fresh TLS handshake per request would
        # cost both sides more than the request itself.
        configuration.connection_pool_maxsize = POOL_SIZE
        try:
            if not source.files:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call,unused-ignore]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call,unused-ignore]
                    config_file=os.pathsep.join(str(path) for path in source.files),
                    context=source.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (config.ConfigException, OSError, ValueError) as exc:
            raise StartupError(f"cannot use the credentials from {source}: {exc}") from None
        return cls(client.ApiClient(configuration))

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
        """Send one request; a decoded body, None for 404 on GET or DELETE (nothing there,
        or already gone), else an operator error."""
        url = self._api.configuration.host + path
        if query:
            url += "?" + urlencode(query)
        headers: dict[str, str] = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if body is not None:
            headers["Content-Type"] = content_type
        self._api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        payload = json.dumps(body) if body is not None else None
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
        if response.status == 404 and method in ("GET", "DELETE"):
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

    def get_path(self, path: str, *, query: Mapping[str, str] | None = None) -> Body | None:
        """GET any API path (``/version``, discovery, a limited list); None on 404."""
        return self._request("GET", path, query=query)

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

    def remove_annotation(
        self, api_version: str, kind: str, namespace: str, name: str, key: str
    ) -> Body:
        """Remove one annotation with a JSON merge patch, which touches nothing else (an
        apply would take the object's other fields under the operator's manager)."""
        path = kind_of(api_version, kind).path(namespace, name)
        patched = self._request(
            "PATCH",
            path,
            body={"metadata": {"annotations": {key: None}}},
            content_type="application/merge-patch+json",
        )
        assert patched is not None
        return patched

    def create(self, obj: Body, *, dry_run: bool = False) -> Body:
        """Create an object; 409 (already exists) is a TemporaryError like any conflict.
        ``dry_run`` asks the API server to check everything but store nothing."""
        path = kind_of(obj["apiVersion"], obj["kind"]).path(obj["metadata"].get("namespace"))
        query = {"dryRun": "All"} if dry_run else None
        created = self._request("POST", path, query=query, body=obj)
        assert created is not None
        return created

    def replace(self, obj: Body) -> Body:
        """Replace an object; its ``metadata.resourceVersion`` makes this compare-and-swap."""
        meta = obj["metadata"]
        path = kind_of(obj["apiVersion"], obj["kind"]).path(meta.get("namespace"), meta["name"])
        replaced = self._request("PUT", path, body=obj)
        assert replaced is not None
        return replaced

    def delete(self, api_version: str, kind: str, namespace: str, name: str, *, uid: str) -> None:
        """Delete an object if it is still the one with ``uid``; gone already is fine.

        The uid precondition makes this safe against a race with a re-creation: an object of
        the same name made meanwhile is a different object (409, retried after a fresh look).
        Dependents are deleted in the background by the garbage collector.
        """
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        }
        self._request("DELETE", kind_of(api_version, kind).path(namespace, name), body=body)

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()  # type: ignore[no-untyped-call,unused-ignore]
