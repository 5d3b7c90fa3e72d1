"""Unit tests for sluice.operator.providers: which pods are asked, how often, what is kept
and forgotten, with a fake in place of the HTTP client (tests/operator/test_runtime_client.py
asks a real runtime)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sluice.contracts import ports
from sluice.contracts.labels import LABEL_COMPONENT, LABEL_INFERENCESERVICE
from sluice.operator.errors import TemporaryError
from sluice.operator.providers import Providers
from sluice.operator.workqueue import Workers, WorkQueue

KEY = ("models", "mlp")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Runtimes:
    """Fake runtime pods by address: the provider each reports, or the error asking it
    raises. Records every question; ``meanwhile`` runs while a pod is being asked."""

    def __init__(self, **answers: str | Exception | None) -> None:
        self.answers: dict[str, str | Exception | None] = {
            host.replace("_", "."): answer for host, answer in answers.items()
        }
        self.asked: list[tuple[str, int, str]] = []
        self.meanwhile: Callable[[], object] | None = None

    def provider(self, host: str, port: int, model: str) -> str | None:
        self.asked.append((host, port, model))
        if self.meanwhile is not None:
            self.meanwhile()
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Rig:
    """Providers over a hand-driven queue: ``work`` lets the provider workers do what is
    due now."""

    def __init__(self, runtimes: Runtimes, *, attempts: int = 3) -> None:
        self.clock = Clock()
        self.queue: WorkQueue[str] = WorkQueue(base_delay=1.0, max_delay=8.0, clock=self.clock)
        self.learned: list[tuple[str, str]] = []
        self.providers = Providers(
            self.queue, runtimes.provider, self.learned.append, attempts=attempts
        )
        self.workers = Workers(self.queue, self.providers.ask, count=1, name="provider")

    def work(self) -> None:
        while (uid := self.queue.get(timeout=0)) is not None:
            self.workers.handle(uid)


def pod(
    uid: str,
    ip: str | None = "10.0.0.1",
    *,
    ready: bool = True,
    variant: str = "predictor",
    phase: str = "Running",
    terminating: bool = False,
) -> dict[str, Any]:
    """A runtime pod as the watch cache keeps it."""
    meta: dict[str, Any] = {
        "name": f"mlp-{variant}-{uid}",
        "namespace": KEY[0],
        "uid": uid,
        "labels": {LABEL_INFERENCESERVICE: KEY[1], LABEL_COMPONENT: variant},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": "gpu-0", "containers": []},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_a_ready_pod_is_asked_once_and_its_answer_kept() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU})
    rig = Rig(runtimes)
    assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {}
    assert runtimes.asked == []  # observing never waits for a pod
    rig.work()
    assert runtimes.asked == [("10.0.0.1", ports.HTTP_PORT, "mlp")]
    assert rig.learned == [KEY]
    for _ in range(3):
        assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {"predictor": (CPU,)}
    rig.work()
    assert len(runtimes.asked) == 1


def test_only_ready_live_pods_with_an_address_are_asked() -> None:
    rig = Rig(Runtimes())
    pods = [
        pod("starting", ready=False),
        pod("no-ip", None),
        pod("going", terminating=True),
        pod("done", phase="Succeeded"),
    ]
    assert rig.providers.observe(KEY, "mlp", pods) == {}
    assert len(rig.queue) == 0


def test_each_variant_reports_its_own_and_pods_that_disagree_are_all_named() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CUDA, "10_0_0_2": CPU, "10_0_0_3": CPU})
    rig = Rig(runtimes)
    pods = [pod("a", "10.0.0.1"), pod("b", "10.0.0.2"), pod("c", "10.0.0.3", variant="canary")]
    rig.providers.observe(KEY, "mlp", pods)
    rig.work()
    assert rig.providers.observe(KEY, "mlp", pods) == {
        "predictor": (CPU, CUDA),
        "canary": (CPU,),
    }
    # An answered pod that is not Ready for a while still says what it runs on.
    pods[0] = pod("a", "10.0.0.1", ready=False)
    assert rig.providers.observe(KEY, "mlp", pods)["predictor"] == (CPU, CUDA)
    # One that is terminating no longer counts.
    pods[0] = pod("a", "10.0.0.1", terminating=True)
    assert rig.providers.observe(KEY, "mlp", pods)["predictor"] == (CPU,)


def test_an_unreachable_pod_is_tried_with_back_off_then_left_until_ready_again() -> None:
    runtimes = Runtimes(**{"10_0_0_1": TemporaryError("connection refused", delay=0.0)})
    rig = Rig(runtimes, attempts=3)
    rig.providers.observe(KEY, "mlp", [pod("a")])
    rig.work()
    assert len(runtimes.asked) == 1
    rig.work()  # the retry waits for the back-off
    assert len(runtimes.asked) == 1
    for tries in (2, 3):
        rig.clock.now += 8.0
        rig.work()
        assert len(runtimes.asked) == tries
    rig.clock.now += 60.0
    rig.work()
    rig.providers.observe(KEY, "mlp", [pod("a")])  # still Ready: not asked again
    rig.work()
    assert len(runtimes.asked) == 3
    assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {}
    assert rig.learned == []

    rig.providers.observe(KEY, "mlp", [pod("a", ready=False)])
    runtimes.answers["10.0.0.1"] = CPU
    rig.providers.observe(KEY, "mlp", [pod("a")])  # Ready again: asked afresh
    rig.work()
    assert len(runtimes.asked) == 4
    assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {"predictor": (CPU,)}


def test_a_pod_that_answers_without_a_provider_is_not_asked_again() -> None:
    runtimes = Runtimes(**{"10_0_0_1": None})
    rig = Rig(runtimes)
    rig.providers.observe(KEY, "mlp", [pod("a")])
    rig.work()
    assert rig.learned == []  # nothing new for status
    assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {}
    rig.work()
    assert len(runtimes.asked) == 1


def test_pods_that_go_are_forgotten() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CUDA, "10_0_0_2": CPU})
    rig = Rig(runtimes)
    rig.providers.observe(KEY, "mlp", [pod("a", "10.0.0.1")])
    rig.work()
    # A new pod replaces the old one: until it answers, nothing is reported.
    assert rig.providers.observe(KEY, "mlp", [pod("b", "10.0.0.2")]) == {}
    rig.work()
    assert rig.providers.observe(KEY, "mlp", [pod("b", "10.0.0.2")]) == {"predictor": (CPU,)}
    # Forgotten for good: a uid seen again (the API server never reuses one) is asked afresh.
    rig.providers.observe(KEY, "mlp", [pod("a", "10.0.0.1")])
    rig.work()
    assert len(runtimes.asked) == 3


def test_an_answer_from_a_pod_that_went_meanwhile_is_dropped() -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU})
    rig = Rig(runtimes)
    # The pod is deleted while it answers.
    runtimes.meanwhile = lambda: rig.providers.observe(KEY, "mlp", [])
    rig.providers.observe(KEY, "mlp", [pod("a")])
    rig.work()
    assert len(runtimes.asked) == 1
    assert rig.learned == []
    assert rig.providers.observe(KEY, "mlp", [pod("a")]) == {}  # a Ready pod: asked again


@pytest.mark.parametrize("queued", [True, False])
def test_forget_drops_every_pod_of_an_inferenceservice(queued: bool) -> None:
    runtimes = Runtimes(**{"10_0_0_1": CPU})
    rig = Rig(runtimes)
    other = ("models", "other")
    rig.providers.observe(KEY, "mlp", [pod("a")])
    rig.providers.observe(other, "other", [pod("b")])
    if not queued:
        rig.work()
    rig.providers.forget(KEY)
    rig.work()
    assert rig.learned == ([other] if queued else [KEY, other])
    assert rig.providers.observe(other, "other", [pod("b")]) == {"predictor": (CPU,)}
    asked = len(runtimes.asked)
    rig.providers.forget(other)
    assert rig.providers.observe(other, "other", [pod("b")]) == {}
    rig.work()
    assert len(runtimes.asked) == asked + 1  # forgotten: asked afresh
