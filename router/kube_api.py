"""The router's only code that talks to the Kubernetes API.

``KubeSource`` (``sluice.router.kube_source``) reads the route table's ConfigMap and the
variants' EndpointSlices through the two ``ListWatch`` objects made here, on the ``kubernetes``
client. They hand back objects as plain JSON, and turn the client's errors into the two that
``sluice.router.listwatch`` decides on: ``ExpiredError`` (410 Gone: list again) and ``ApiError``
(anything else from the API or the network: back off and retry). The router's Role allows
get, list and watch on its one ConfigMap and list and watch on the namespace's EndpointSlices,
which is all this asks for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client import ApiClient as ApiClient  # re-exported for the type of KubeSource.api
from sluice.router.listwatch import ApiError, Event, ExpiredError, Listing, ListWatch

# The API server ends each watch after this many seconds (the next starts where it ended),
# and a response silent for longer than READ_TIMEOUT means a dead connection.
WATCH_SECONDS = 240
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = WATCH_SECONDS + 30.0

# What the client raises when the API answers with an error or cannot be reached, or sends
# what is not JSON; anything else is a bug and is left to rise.
_CLIENT_ERRORS = (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


def load_client() -> ApiClient:
    """A client for the API of the cluster this runs in, or else of the current kubeconfig
    context (a router started by hand next to a cluster)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return ApiClient(configuration)


def config_map(api: ApiClient, namespace: str, name: str) -> ListWatch:
    """The ConfigMap ``name`` in ``namespace``, alone."""
    function = client.CoreV1Api(api).list_namespaced_config_map
    return KubeListWatch(function, namespace, field_selector=f"metadata.name={name}")


def endpoint_slices(api: ApiClient, namespace: str) -> ListWatch:
    """The EndpointSlices (discovery.k8s.io/v1) in ``namespace``."""
    function = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice
    return KubeListWatch(function, namespace)


class KubeListWatch:
    """List and watch through one of the client's ``list_namespaced_*`` functions."""

    def __init__(
        self, function: Callable[..., Any], namespace: str, *, field_selector: str = ""
    ) -> None:
        self._function = function
        self._namespace = namespace
        self._field_selector = field_selector

    def list(self, label_selector: str) -> Listing:
        """The selected objects and the resourceVersion to watch from."""
        try:
            response = self._function(
                self._namespace,
                **self._selectors(label_selector),
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
            body = json.loads(response.data)
        except _CLIENT_ERRORS as exc:
            raise _translate(exc, "list") from exc
        return Listing(tuple(body.get("items") or ()), body["metadata"]["resourceVersion"])

    def watch(self, label_selector: str, resource_version: str) -> KubeStream:
        """A watch of the selected objects from ``resource_version``, with bookmarks."""
        return KubeStream(
            self._function,
            self._namespace,
            **self._selectors(label_selector),
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )

    def _selectors(self, label_selector: str) -> dict[str, str]:
        selectors = {"field_selector": self._field_selector, "label_selector": label_selector}
        return {name: value for name, value in selectors.items() if value}


class KubeStream:
    """One watch request; its events come as they arrive, until the server ends it."""

    def __init__(self, function: Callable[..., Any], namespace: str, **query: Any) -> None:
        self._function = function
        self._namespace = namespace
        self._query = query
        # "object": the events' objects stay plain JSON rather than the client's models.
        self._watch = watch.Watch(return_type="object")
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        if self._closed.is_set():
            return
        try:
            for event in self._watch.stream(self._function, self._namespace, **self._query):
                yield Event(event["type"], event["raw_object"])
                if self._closed.is_set():
                    return
        except _CLIENT_ERRORS as exc:
            # Closing shuts the connection down under the read: that is no error.
            if self._closed.is_set():
                return
            raise _translate(exc, "watch") from exc

    def close(self) -> None:
        """End the watch; a read blocked on the connection returns at once."""
        self._closed.set()
        self._watch.stop()


def _translate(exc: Exception, what: str) -> ExpiredError | ApiError:
    """One of ``_CLIENT_ERRORS`` as ``ExpiredError`` (410 Gone) or ``ApiError``."""
    if isinstance(exc, client.ApiException):
        if exc.status == HTTPStatus.GONE:
            return ExpiredError(f"{what}: {exc.reason}")
        return ApiError(f"{what}: HTTP {exc.status} {exc.reason}{_message(exc.body)}")
    return ApiError(f"{what}: {type(exc).__name__}: {exc}")


def _message(body: Any) -> str:
    """The message of a Kubernetes Status in an error's body, when there is one."""
    try:
        message = json.loads(body).get("message")
    except (TypeError, ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""
