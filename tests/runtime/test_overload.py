"""Overload end to end on both protocols: a full queue answers 503 / UNAVAILABLE at once, a
request not answered in time gets 504 / DEADLINE_EXCEEDED, and a request that left the queue
(timed out, or given up by its client) is never computed and does not hold a place in it.

A real server runs in-process with the ``slow`` model, whose requests say how long they keep
the worker busy (real compute); real tritonclient HTTP and gRPC clients send the requests.
Where a check relies on the busy request still running, the test also asserts that it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from sluice.runtime.app import RuntimeApp
from sluice.runtime.settings import ServedModel, Settings
from tritonclient.utils import InferenceServerException

from e2e.cluster.waiting import wait_for
from tests.runtime.conftest import ModelFiles, settings_for
from tests.runtime.models import build_slow, iterations_lasting
from tests.runtime.serving import LoopThread, running_app
from tests.runtime.test_metrics import scrape

SLOW = (("model", "slow"),)


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_slow(tmp_path_factory.mktemp("slow") / "slow.onnx")


@pytest.fixture(scope="module")
def busy(slow_model: Path) -> int:
    """Iterations that keep the worker busy for about two seconds on this machine."""
    return iterations_lasting(slow_model, 2.0)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def slow_settings(files: ModelFiles, slow_model: Path, **overrides: object) -> Settings:
    return settings_for(files, models=(ServedModel("slow", slow_model),), **overrides)


def http_infer(app: RuntimeApp, iterations: int) -> np.ndarray:
    """One request to the slow model over HTTP, on a client of its own."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{app.http_port}", network_timeout=60)
    try:
        item = httpclient.InferInput("n", [1], "INT64")
        item.set_data_from_numpy(np.array([iterations], dtype=np.int64))
        return client.infer("slow", [item]).as_numpy("y")  # type: ignore[no-any-return]
    finally:
        client.close()


def grpc_infer(app: RuntimeApp, iterations: int, client_timeout: float | None = None) -> np.ndarray:
    """One request to the slow model over gRPC, on a client of its own."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{app.grpc_port}")
    try:
        item = grpcclient.InferInput("n", [1], "INT64")
        item.set_data_from_numpy(np.array([iterations], dtype=np.int64))
        result = client.infer("slow", [item], client_timeout=client_timeout)
        return result.as_numpy("y")  # type: ignore[no-any-return]
    finally:
        client.close()


def refusal(call: Callable[..., object], *args: object) -> InferenceServerException:
    """The error a client call ended with (the call must fail)."""
    with pytest.raises(InferenceServerException) as caught:
        call(*args)
    return caught.value


def sample(app: RuntimeApp, name: str, labels: tuple[tuple[str, str], ...] = SLOW) -> float:
    return scrape(app).get(name, {}).get(labels, 0.0)


def wait_until_computing(app: RuntimeApp, runs_started: int) -> None:
    """Wait until the worker has started ``runs_started`` runs (each observes its queue wait)."""
    wait_for(
        lambda: sample(app, "sluice_queue_duration_seconds_count") >= runs_started,
        timeout=30,
        interval=0.01,
        what=f"{runs_started} run(s) of the slow model to start",
    )


def runs_finished(app: RuntimeApp) -> float:
    return sample(app, "sluice_batch_size_count")


def requests(app: RuntimeApp, protocol: str, code: str) -> float:
    labels = (("code", code), ("model", "slow"), ("protocol", protocol))
    return sample(app, "sluice_requests_total", labels)


def test_a_full_queue_refuses_at_once_on_both_protocols(
    loop_thread: LoopThread,
    model_files: ModelFiles,
    slow_model: Path,
    busy: int,
    pool: ThreadPoolExecutor,
) -> None:
    settings = slow_settings(model_files, slow_model, max_queue_size=1)
    with running_app(loop_thread, settings) as app:
        running = pool.submit(http_infer, app, busy)
        wait_until_computing(app, 1)
        queued = pool.submit(grpc_infer, app, 0)  # takes the queue's one place
        wait_for(
            lambda: sample(app, "sluice_queue_depth") == 2,
            timeout=30,
            interval=0.01,
            what="a second request in the queue",
        )
        over_http = refusal(http_infer, app, 0)
        over_grpc = refusal(grpc_infer, app, 0)
        assert runs_finished(app) == 0, "the busy run ended before the queue was full"
        assert (over_http.status(), over_grpc.status()) == ("503", "StatusCode.UNAVAILABLE")
        assert "queue is full" in str(over_http.message())
        assert "queue is full" in str(over_grpc.message())
        assert running.result(60).shape == (1, 1)
        assert queued.result(60).tolist() == [[256.0]]  # the trace of the 256 x 256 identity
        assert (requests(app, "http", "503"), requests(app, "grpc", "503")) == (1, 1)
        assert (requests(app, "http", "200"), requests(app, "grpc", "200")) == (1, 1)


def test_timeouts_on_both_protocols_and_expired_requests_are_never_run(
    loop_thread: LoopThread,
    model_files: ModelFiles,
    slow_model: Path,
    busy: int,
    pool: ThreadPoolExecutor,
) -> None:
    settings = slow_settings(model_files, slow_model, max_queue_size=1, request_timeout_s=0.3)
    with running_app(loop_thread, settings) as app:
        running = pool.submit(http_infer, app, busy)
        wait_until_computing(app, 1)
        behind = pool.submit(refusal, grpc_infer, app, 0)  # queued behind the busy run
        over_http = running.exception(60)
        over_grpc = behind.result(60)
        assert isinstance(over_http, InferenceServerException)
        assert (over_http.status(), over_grpc.status()) == ("504", "StatusCode.DEADLINE_EXCEEDED")
        assert "not answered within 0.3 s" in str(over_grpc.message())
        # The expired request left the queue: the next one takes its place instead of being
        # refused as if the queue were still full; it waits behind the busy run and expires.
        late = refusal(http_infer, app, 0)
        assert late.status() == "504", late.message()
        assert runs_finished(app) == 0, "the busy run ended before the checks above"
        wait_for(lambda: runs_finished(app) == 1, timeout=60, interval=0.05, what="the busy run")
        assert grpc_infer(app, 0).tolist() == [[256.0]]
        # Only the busy run and the last request were computed, never the expired ones.
        assert runs_finished(app) == 2
        assert (requests(app, "http", "504"), requests(app, "grpc", "504")) == (2, 1)
        assert sample(app, "sluice_queue_depth") == 0


def test_a_request_its_client_gave_up_on_is_not_run_and_frees_its_place(
    loop_thread: LoopThread,
    model_files: ModelFiles,
    slow_model: Path,
    busy: int,
    pool: ThreadPoolExecutor,
) -> None:
    settings = slow_settings(model_files, slow_model, max_queue_size=1)
    with running_app(loop_thread, settings) as app:
        running = pool.submit(http_infer, app, busy)
        wait_until_computing(app, 1)
        giving_up = pool.submit(refusal, grpc_infer, app, 0, 0.5)  # the client's own deadline
        wait_for(
            lambda: sample(app, "sluice_queue_depth") == 2,
            timeout=30,
            interval=0.01,
            what="the request to be queued before its client gives up",
        )
        assert giving_up.result(60).status() == "StatusCode.DEADLINE_EXCEEDED"
        wait_for(
            lambda: sample(app, "sluice_queue_depth") == 1,
            timeout=30,
            interval=0.01,
            what="the server to drop the request its client gave up on",
        )
        after = pool.submit(http_infer, app, 0)
        wait_for(
            lambda: sample(app, "sluice_queue_depth") == 2 or after.done(),
            timeout=30,
            interval=0.01,
            what="the next request to be queued",
        )
        assert runs_finished(app) == 0, "the busy run ended before the next request came"
        assert after.result(60).tolist() == [[256.0]]
        assert running.result(60).shape == (1, 1)
        assert runs_finished(app) == 2  # the busy run and the next request, not the dropped one
