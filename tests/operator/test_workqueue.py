"""Unit tests for sluice.operator.workqueue: collapsing, exclusivity, back-off, requeue-after,
and the workers draining a queue into the reconciler over an in-memory API."""

from __future__ import annotations

import threading

import pytest
from fakekube import FakeKube
from sluice.contracts.labels import LABEL_INFERENCESERVICE
from sluice.operator import spec
from sluice.operator.cache import Cache
from sluice.operator.errors import PermanentError, TemporaryError
from sluice.operator.reconcile import Key, Reconciler
from sluice.operator.workqueue import Workers, WorkQueue

from e2e.cluster.waiting import wait_for


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(clock: Clock) -> WorkQueue[str]:
    return WorkQueue(base_delay=1.0, max_delay=8.0, clock=clock)


def drain(queue: WorkQueue[str]) -> list[str]:
    """Every key ready now, each released at once."""
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken


def test_keys_collapse_while_queued(queue: WorkQueue[str]) -> None:
    for key in ("a", "b", "a", "a", "b", "c"):
        queue.add(key)
    assert len(queue) == 3
    assert drain(queue) == ["a", "b", "c"]


def test_a_key_is_never_handed_out_twice_at_once(queue: WorkQueue[str]) -> None:
    queue.add("a")
    assert queue.get(timeout=0) == "a"
    queue.add("a")  # a change arrives while a worker has the key
    queue.add("a")
    assert queue.get(timeout=0) is None
    queue.done("a")
    assert queue.get(timeout=0) == "a"  # processed again, once
    queue.done("a")
    assert queue.get(timeout=0) is None


def test_add_after_waits_for_its_time(queue: WorkQueue[str], clock: Clock) -> None:
    queue.add_after("a", 5.0)
    queue.add_after("a", 10.0)  # a later time does not push back an earlier one
    assert drain(queue) == []
    clock.now += 4.9
    assert drain(queue) == []
    clock.now += 0.1
    assert drain(queue) == ["a"]
    clock.now += 10.0
    assert drain(queue) == []


def test_an_add_now_replaces_a_pending_timer(queue: WorkQueue[str], clock: Clock) -> None:
    queue.add_after("a", 5.0)
    queue.add("a")
    assert drain(queue) == ["a"]
    clock.now += 5.0
    assert drain(queue) == []


def test_retries_back_off_per_key_and_honour_the_errors_delay(
    queue: WorkQueue[str], clock: Clock
) -> None:
    assert [queue.retry("a") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert queue.retry("b") == 1.0  # another key has its own back-off
    assert queue.retry("c", 30.0) == 30.0  # a Retry-After longer than the back-off wins
    queue.forget("a")
    assert queue.retry("a") == 1.0
    clock.now += 1.0
    assert drain(queue) == ["a", "b"]


def test_close_hands_out_nothing_more(queue: WorkQueue[str]) -> None:
    queue.add("queued")
    queue.close()
    queue.add("late")
    assert queue.get(timeout=0) is None


def test_close_releases_waiting_workers(queue: WorkQueue[str]) -> None:
    got: list[str | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get()))
    waiter.start()
    queue.close()
    waiter.join(timeout=10)
    assert got == [None]


def test_workers_retry_temporary_errors_and_requeue_after(
    queue: WorkQueue[str], clock: Clock
) -> None:
    outcomes: dict[str, list[float | Exception | None]] = {
        "flaky": [TemporaryError("throttled", delay=3.0), None],
        "timed": [20.0, None],
        "broken": [PermanentError("rejected")],
        "buggy": [KeyError("a bug"), None],
    }
    runs: list[str] = []

    def process(key: str) -> float | None:
        runs.append(key)
        outcome = outcomes[key].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    workers = Workers(queue, process, count=1)
    for key in outcomes:
        queue.add(key)
    while (key := queue.get(timeout=0)) is not None:
        workers.handle(key)
    assert runs == ["flaky", "timed", "broken", "buggy"]
    clock.now += 2.9  # past the unexpected error's back-off (1s), not the error's delay (3s)
    while (key := queue.get(timeout=0)) is not None:
        workers.handle(key)
    assert runs[4:] == ["buggy"]
    clock.now += 0.1
    while (key := queue.get(timeout=0)) is not None:
        workers.handle(key)
    assert runs[5:] == ["flaky"]
    clock.now += 17.0
    while (key := queue.get(timeout=0)) is not None:
        workers.handle(key)
    assert runs[6:] == ["timed"]
    assert outcomes == {"flaky": [], "timed": [], "broken": [], "buggy": []}


def test_workers_reconcile_many_objects_with_three_writes_each() -> None:
    kube = FakeKube()
    cache = Cache(LABEL_INFERENCESERVICE)
    reconciler = Reconciler(kube, cache, instance="test")
    queue: WorkQueue[Key] = WorkQueue()
    workers = Workers(queue, lambda key: reconciler.reconcile(key).requeue_after, count=4)
    names = [f"model-{i:03d}" for i in range(50)]
    for name in names:
        kube.put(
            {
                "apiVersion": spec.API_VERSION,
                "kind": spec.KIND,
                "metadata": {"name": name, "namespace": "bench"},
                "spec": {"model": {"uri": "file:///models/mlp.onnx"}},
            }
        )
    kube.deliver(cache)
    workers.start()
    try:
        for name in names:
            queue.add(("bench", name))
            queue.add(("bench", name))
        wait_for(
            lambda: len(kube.writes) == 3 * len(names) and not len(queue),
            what="every InferenceService reconciled",
        )
    finally:
        workers.stop(timeout=10)
    for name in names:
        assert sorted(write for write in kube.writes if name in write[2]) == [
            ("apply", "Deployment", f"{name}-predictor"),
            ("apply", "Service", name),
            ("patch_status", "InferenceService", name),
        ]
