"""Tests of sluice.operator.runtime_client against a real runtime server started in-process on
loopback with a real ONNX model (the runtime's own test helpers), so the operator's reading of
model metadata is proven against what the runtime really writes; and of the whole path from a
Ready pod in the watch cache to ``status.provider``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import urllib3
from fakekube import FakeKube, ready_pod
from sluice.contracts.labels import LABEL_INFERENCESERVICE
from sluice.operator import spec
from sluice.operator.cache import Cache
from sluice.operator.errors import TemporaryError
from sluice.operator.providers import Providers
from sluice.operator.reconcile import Key, Reconciler
from sluice.operator.runtime_client import RuntimeClient
from sluice.operator.workqueue import Workers, WorkQueue
from sluice.runtime.app import RuntimeApp
from sluice.runtime.settings import ServedModel, Settings

from e2e.cluster.waiting import wait_for
from tests.runtime.models import build_fixed
from tests.runtime.serving import LoopThread, free_port, running_app

CPU = "CPUExecutionProvider"
NS = "models"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeApp]:
    """A runtime serving model ``relu`` on CPU, on 127.0.0.1 at a port the kernel picked."""
    model = build_fixed(tmp_path_factory.mktemp("models") / "relu.onnx")
    settings = Settings(
        models=(ServedModel("relu", model),),
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        providers=(CPU,),
    )
    loop = LoopThread()
    try:
        with running_app(loop, settings) as app:
            yield app
    finally:
        loop.close()


@pytest.fixture
def client() -> Iterator[RuntimeClient]:
    runtimes = RuntimeClient()
    yield runtimes
    runtimes.close()


def test_the_runtime_says_which_provider_it_uses(
    runtime: RuntimeApp, client: RuntimeClient
) -> None:
    assert client.provider("127.0.0.1", runtime.http_port, "relu") == CPU


def test_a_model_the_runtime_does_not_serve_is_an_answer_without_a_provider(
    runtime: RuntimeApp, client: RuntimeClient
) -> None:
    assert client.provider("127.0.0.1", runtime.http_port, "resnet") is None


def test_a_runtime_that_is_not_listening_is_a_temporary_error(client: RuntimeClient) -> None:
    with pytest.raises(TemporaryError, match=r"127\.0\.0\.1"):
        client.provider("127.0.0.1", free_port(), "relu")


def test_a_runtime_that_never_answers_is_given_up_on_quickly() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # accepts connections and never answers
        port = server.getsockname()[1]
        client = RuntimeClient(timeout=urllib3.Timeout(connect=1.0, read=0.3))
        started = time.monotonic()
        try:
            with pytest.raises(TemporaryError, match="timed out"):
                client.provider("127.0.0.1", port, "relu")
        finally:
            client.close()
        assert time.monotonic() - started < 5.0


def test_status_provider_comes_from_the_runtime_pod(runtime: RuntimeApp) -> None:
    """A Ready pod at the runtime's address: the provider workers ask it, queue the
    InferenceService, and the next run writes what the runtime said into status."""
    kube = FakeKube()
    cache = Cache(LABEL_INFERENCESERVICE)
    woken: list[Key] = []
    client = RuntimeClient()
    asking: WorkQueue[str] = WorkQueue()
    providers = Providers(asking, client.provider, woken.append, port=runtime.http_port)
    workers = Workers(asking, providers.ask, count=1, name="provider")
    reconciler = Reconciler(kube, cache, instance="test", providers=providers)
    kube.put(
        {
            "apiVersion": spec.API_VERSION,
            "kind": spec.KIND,
            "metadata": {"name": "relu", "namespace": NS},
            "spec": {"model": {"uri": "file:///models/relu.onnx"}, "resources": {"gpus": 1}},
        }
    )
    kube.put(ready_pod("relu-predictor-a", NS, "relu", "127.0.0.1"))
    kube.deliver(cache)
    workers.start()
    try:
        reconcile_until_settled(reconciler, kube, cache)
        wait_for(lambda: woken == [(NS, "relu")], timeout=10, what="the pod to answer")
    finally:
        workers.stop(timeout=10)
        client.close()
    reconcile_until_settled(reconciler, kube, cache)
    isvc = kube.get(spec.API_VERSION, spec.KIND, NS, "relu")
    assert isvc is not None
    assert isvc["status"]["provider"] == CPU


def reconcile_until_settled(reconciler: Reconciler, kube: FakeKube, cache: Cache) -> None:
    """Run as the work queue would while a run asks to run again at once."""
    for _ in range(5):
        result = reconciler.reconcile((NS, "relu"))
        kube.deliver(cache)
        if result.requeue_after != 0:
            return
    raise AssertionError("still asking to run again")
