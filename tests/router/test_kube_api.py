"""The router's adapter to the Kubernetes client (``sluice.router.kube_api``), through a real
``ApiClient`` talking HTTP to a small scripted API server on loopback: the requests it makes
(selectors, resourceVersion, bookmarks), the objects it hands back as plain JSON, and the
client's errors turned into ``ExpiredError`` and ``ApiError``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client
from sluice.router import kube_api
from sluice.router.listwatch import ApiError, Event, ExpiredError, Listing

NAMESPACE = "ns"
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"


class Script:
    """What the fake API answers, and the requests it saw."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status = 200
        self.body: dict[str, Any] = {}
        self.lines: list[dict[str, Any]] = []  # a watch's events
        self.hold = threading.Event()  # a watch stays open until this is set
        self.holding = threading.Event()  # set while a watch is held open


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def api(script: Script) -> Iterator[client.ApiClient]:
    """A client of the fake API server, which is stopped afterwards."""

    class Handler(BaseHTTPRequestHandler):
        # Watches stream chunked over a connection kept alive, as the API server's do.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {name: values[0] for name, values in parse_qs(url.query).items()}
            script.requests.append((url.path, query))
            if query.get("watch") == "true":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in script.lines:
                    chunk = json.dumps(line).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if not script.hold.is_set():
                    script.holding.set()
                    script.hold.wait(10)
                self.wfile.write(b"0\r\n\r\n")
                return
            body = json.dumps(script.body).encode()
            self.send_response(script.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read the requests from the script."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield client.ApiClient(configuration)
    finally:
        script.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def config_map(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}, "data": {"k": "v"}}


def test_lists_the_one_config_map_as_plain_json(script: Script, api: client.ApiClient) -> None:
    script.body = {"metadata": {"resourceVersion": "7"}, "items": [config_map("iris-router", "6")]}
    listing = kube_api.config_map(api, NAMESPACE, "iris-router").list("")
    assert listing == Listing((config_map("iris-router", "6"),), "7")
    [(path, query)] = script.requests
    assert path == CONFIGMAPS
    assert query == {"fieldSelector": "metadata.name=iris-router"}


def test_lists_slices_by_label(script: Script, api: client.ApiClient) -> None:
    script.body = {"metadata": {"resourceVersion": "3"}, "items": []}
    selector = "kubernetes.io/service-name in (iris-a,iris-b)"
    assert kube_api.endpoint_slices(api, NAMESPACE).list(selector) == Listing((), "3")
    assert script.requests == [(SLICES, {"labelSelector": selector})]


def test_watches_from_a_version_with_bookmarks(script: Script, api: client.ApiClient) -> None:
    script.hold.set()
    script.lines = [
        {"type": "ADDED", "object": config_map("iris-router", "8")},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        {"type": "DELETED", "object": config_map("iris-router", "10")},
    ]
    stream = kube_api.config_map(api, NAMESPACE, "iris-router").watch("", "7")
    assert list(stream) == [
        Event("ADDED", config_map("iris-router", "8")),
        Event("BOOKMARK", {"metadata": {"resourceVersion": "9"}}),
        Event("DELETED", config_map("iris-router", "10")),
    ]
    [(path, query)] = script.requests
    assert path == CONFIGMAPS
    assert query["watch"] == "true"
    assert query["resourceVersion"] == "7"
    assert query["allowWatchBookmarks"] == "true"
    assert query["fieldSelector"] == "metadata.name=iris-router"
    assert query["timeoutSeconds"] == str(kube_api.WATCH_SECONDS)


def test_an_expired_version_is_expired_error(script: Script, api: client.ApiClient) -> None:
    script.hold.set()
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    script.lines = [{"type": "ERROR", "object": gone}]
    with pytest.raises(ExpiredError):
        list(kube_api.endpoint_slices(api, NAMESPACE).watch("", "1"))


def test_a_refused_list_is_api_error_with_the_api_message(
    script: Script, api: client.ApiClient
) -> None:
    script.status = 403
    script.body = {"kind": "Status", "code": 403, "message": 'configmaps "x" is forbidden'}
    with pytest.raises(ApiError, match=r'HTTP 403 Forbidden: configmaps "x" is forbidden'):
        kube_api.config_map(api, NAMESPACE, "x").list("")


def test_no_server_is_api_error() -> None:
    # A port nothing listens on: bound, then closed.
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    configuration.retries = 0
    api = client.ApiClient(configuration)
    with pytest.raises(ApiError, match="list: "):
        kube_api.config_map(api, NAMESPACE, "x").list("")
    with pytest.raises(ApiError, match="watch: "):
        list(kube_api.config_map(api, NAMESPACE, "x").watch("", "1"))


def test_close_ends_a_waiting_watch_at_once(script: Script, api: client.ApiClient) -> None:
    script.lines = [{"type": "ADDED", "object": config_map("iris-router", "2")}]
    stream = kube_api.config_map(api, NAMESPACE, "iris-router").watch("", "1")
    seen: list[Event] = []
    reader = threading.Thread(target=lambda: seen.extend(stream))
    reader.start()
    assert script.holding.wait(10), "the watch did not reach the server"
    started = time.monotonic()
    stream.close()
    reader.join(5)
    assert not reader.is_alive()
    assert time.monotonic() - started < 5
    assert seen == [Event("ADDED", config_map("iris-router", "2"))]


def test_a_closed_stream_gives_nothing(script: Script, api: client.ApiClient) -> None:
    stream = kube_api.config_map(api, NAMESPACE, "iris-router").watch("", "1")
    stream.close()
    assert list(stream) == []
    assert script.requests == []
