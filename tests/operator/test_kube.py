"""Unit tests for sluice.operator.kube: where the credentials come from, and the API error
table of docs/operator.md, decided once by HTTP status.

The error table is proven through the real client against a real HTTP server on loopback,
which answers each status on demand (the API server cannot be made to answer 429 or 503);
the statuses a real API server produces (401, 403, 404, 409, 422) are proven against one in
tests/integration/test_api_errors.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from sluice.operator.errors import PermanentError, StartupError, TemporaryError
from sluice.operator.kube import ConfigSource, Kube, resolve_config

from e2e.cluster.operator import free_port


def write_kubeconfig(
    path: Path,
    *,
    clusters: dict[str, str] | None = None,
    users: tuple[str, ...] = (),
    contexts: dict[str, tuple[str, str]] | None = None,
    current: str | None = None,
) -> Path:
    """A kubeconfig with clusters (name: server), token users, contexts (name: (cluster,
    user)) and a current context; any part may be left out, as in a split $KUBECONFIG."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server}}
            for name, server in (clusters or {}).items()
        ],
        "users": [{"name": name, "user": {"token": f"token-of-{name}"}} for name in users],
        "contexts": [
            {"name": name, "context": {"cluster": cluster, "user": user}}
            for name, (cluster, user) in (contexts or {}).items()
        ],
    }
    if current is not None:
        body["current-context"] = current
    path.write_text(yaml.safe_dump(body))
    return path


def simple(path: Path, server: str) -> Path:
    return write_kubeconfig(
        path, clusters={"c": server}, users=("u",), contexts={"ctx": ("c", "u")}, current="ctx"
    )


# Resolution order: --kubeconfig, $KUBECONFIG, in-cluster, ~/.kube/config.


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home folder with ~/.kube/config."""
    folder = tmp_path / "home"
    (folder / ".kube").mkdir(parents=True)
    simple(folder / ".kube" / "config", "https://home.example:6443")
    return folder


@pytest.fixture
def token(tmp_path: Path) -> Path:
    """A mounted ServiceAccount token."""
    path = tmp_path / "token"
    path.write_text("sa-token")
    return path


IN_CLUSTER_ENV = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def test_the_flag_comes_first(tmp_path: Path, home: Path, token: Path) -> None:
    flag = simple(tmp_path / "flag", "https://flag.example")
    environ = {"KUBECONFIG": str(simple(tmp_path / "env", "https://env.example")), **IN_CLUSTER_ENV}
    source = resolve_config(flag, environ, home=home, token_file=token)
    assert source == ConfigSource("--kubeconfig", (flag,), "ctx")


def test_kubeconfig_variable_before_in_cluster_and_home(
    tmp_path: Path, home: Path, token: Path
) -> None:
    env = simple(tmp_path / "env", "https://env.example")
    environ = {"KUBECONFIG": str(env), **IN_CLUSTER_ENV}
    assert resolve_config(None, environ, home=home, token_file=token).files == (env,)


def test_kubeconfig_variable_lists_files_and_skips_missing_ones(tmp_path: Path, home: Path) -> None:
    first = simple(tmp_path / "first", "https://first.example")
    second = simple(tmp_path / "second", "https://second.example")
    listed = f"{tmp_path / 'missing'}::{first}:{second}"
    source = resolve_config(None, {"KUBECONFIG": listed}, home=home)
    assert source.origin == "$KUBECONFIG"
    assert source.files == (first, second)


def test_an_empty_kubeconfig_variable_counts_as_unset(home: Path, token: Path) -> None:
    source = resolve_config(None, {"KUBECONFIG": "", **IN_CLUSTER_ENV}, home=home, token_file=token)
    assert source == ConfigSource("in-cluster ServiceAccount")


def test_in_cluster_before_home(home: Path, token: Path) -> None:
    source = resolve_config(None, IN_CLUSTER_ENV, home=home, token_file=token)
    assert source.files == ()


def test_in_cluster_needs_the_environment_and_the_token(
    tmp_path: Path, home: Path, token: Path
) -> None:
    missing_token = tmp_path / "no-token"
    for environ, token_file in ((IN_CLUSTER_ENV, missing_token), ({}, token)):
        source = resolve_config(None, environ, home=home, token_file=token_file)
        assert source == ConfigSource("~/.kube/config", (home / ".kube" / "config",), "ctx")


def test_no_credentials_at_all_says_where_they_could_come_from(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as raised:
        resolve_config(None, {}, home=tmp_path, token_file=tmp_path / "no-token")
    message = str(raised.value)
    for place in ("--kubeconfig", "$KUBECONFIG", "ServiceAccount", "~/.kube/config"):
        assert place in message


def test_a_missing_flag_file_or_an_empty_list_is_an_error(tmp_path: Path, home: Path) -> None:
    with pytest.raises(StartupError, match="no such file"):
        resolve_config(tmp_path / "missing", {}, home=home)
    with pytest.raises(StartupError, match="names no existing file"):
        resolve_config(None, {"KUBECONFIG": str(tmp_path / "missing")}, home=home)


def test_merged_files_connect_like_kubectl(tmp_path: Path) -> None:
    """The first file to name a cluster, user or context wins, and so does the first
    current-context (the kubernetes client alone would take the last one)."""
    first = write_kubeconfig(
        tmp_path / "first",
        clusters={"a": "https://a.example:6443"},
        contexts={"ctx-a": ("a", "alice")},
        current="ctx-a",
    )
    second = write_kubeconfig(
        tmp_path / "second",
        clusters={"a": "https://shadowed.example", "b": "https://b.example:6443"},
        users=("alice", "bob"),
        contexts={"ctx-b": ("b", "bob")},
        current="ctx-b",
    )
    kube = Kube.connect(resolve_config(None, {"KUBECONFIG": f"{first}:{second}"}, home=tmp_path))
    try:
        credentials = kube.credentials()
    finally:
        kube.close()
    assert credentials["server"] == "https://a.example:6443"
    assert credentials["token"] == "token-of-alice"


def test_an_unusable_kubeconfig_is_a_startup_error(tmp_path: Path) -> None:
    broken = write_kubeconfig(tmp_path / "broken", current="nowhere")
    with pytest.raises(StartupError, match="cannot use the credentials from --kubeconfig"):
        Kube.connect(resolve_config(broken, {}, home=tmp_path))


# The API error table, through the real client and a real HTTP server.


class Answer(BaseHTTPRequestHandler):
    """Answers every request with the server's ``status``, ``headers`` and a Status body."""

    server: Script

    def _answer(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        body = json.dumps({"kind": "Status", "message": f"answered {self.server.status}"})
        self.send_response(self.server.status)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_PATCH = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on what the server saw instead."""


class Script(ThreadingHTTPServer):
    """A loopback HTTP server whose answer the test sets."""

    status = 200
    headers: dict[str, str]
    seen: list[str]


@pytest.fixture
def script() -> Iterator[Script]:
    server = Script(("127.0.0.1", 0), Answer)
    server.headers, server.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def kube_for(host: str) -> Kube:
    configuration = client.Configuration()
    configuration.host = host
    return Kube(client.ApiClient(configuration))


@pytest.fixture
def kube(script: Script) -> Iterator[Kube]:
    handle = kube_for(f"http://127.0.0.1:{script.server_address[1]}")
    yield handle
    handle.close()


CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "ns", "resourceVersion": "1"},
}


@pytest.mark.parametrize(
    ("status", "headers", "delay"),
    [
        (409, {}, 1.0),
        (429, {"Retry-After": "7"}, 7.0),
        (429, {}, 5.0),
        (429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, 5.0),
        (500, {}, 5.0),
        (503, {"Retry-After": "1"}, 5.0),
        (504, {}, 5.0),
        (401, {}, 30.0),
        (403, {}, 30.0),
    ],
)
def test_retried_statuses(
    script: Script, kube: Kube, status: int, headers: dict[str, str], delay: float
) -> None:
    script.status, script.headers = status, headers
    with pytest.raises(TemporaryError) as raised:
        kube.replace(CONFIGMAP)
    assert raised.value.delay == delay
    assert f"answered {status}" in str(raised.value)  # the API server's own message
    assert script.seen == ["PUT /api/v1/namespaces/ns/configmaps/c"]


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_other_client_errors_are_permanent(script: Script, kube: Kube, status: int) -> None:
    script.status = status
    with pytest.raises(PermanentError) as raised:
        kube.apply(CONFIGMAP)
    assert raised.value.status == status
    assert f"answered {status}" in str(raised.value)


def test_not_found_on_get_is_none(script: Script, kube: Kube) -> None:
    script.status = 404
    assert kube.get("v1", "ConfigMap", "ns", "c") is None
    assert kube.get_path("/apis/serving.sluice.dev/v1alpha1") is None


def test_connection_failures_are_retried() -> None:
    kube = kube_for(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TemporaryError) as raised:
            kube.get("v1", "ConfigMap", "ns", "c")
    finally:
        kube.close()
    assert raised.value.delay == 5.0


def test_dry_run_create_asks_the_server_to_store_nothing(script: Script, kube: Kube) -> None:
    script.status = 201
    kube.create(CONFIGMAP, dry_run=True)
    assert script.seen == ["POST /api/v1/namespaces/ns/configmaps?dryRun=All"]
