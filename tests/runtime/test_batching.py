"""Dynamic batching against a real onnxruntime model: merge, split, signatures, bounds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sluice.runtime.batching import Batcher, BatchPolicy
from sluice.runtime.dataplane import validate
from sluice.runtime.errors import QueueFullError, RequestTimeoutError
from sluice.runtime.metrics import RuntimeMetrics
from sluice.runtime.model import Model

from tests.runtime.conftest import ModelFiles
from tests.runtime.serving import LoopThread


@pytest.fixture
def metrics() -> RuntimeMetrics:
    return RuntimeMetrics(CollectorRegistry())


def batch_sizes(metrics: RuntimeMetrics, model: str) -> tuple[float, float]:
    """(number of runs, total rows) from the sluice_batch_size histogram."""
    registry = metrics.registry
    count = registry.get_sample_value("sluice_batch_size_count", {"model": model}) or 0.0
    total = registry.get_sample_value("sluice_batch_size_sum", {"model": model}) or 0.0
    return count, total


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


class GatedModel(Model):
    """A model whose runs wait for ``gate``: it keeps the worker busy for as long as a test
    needs, with no timing involved."""

    def __init__(self, name: str, path: Path) -> None:
        super().__init__(name, path, ["CPUExecutionProvider"])
        self.started = threading.Event()
        self.gate = threading.Event()

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.started.set()
        if not self.gate.wait(30):
            raise RuntimeError("the test never opened the gate")
        return super().run(inputs)


async def until_running(model: GatedModel) -> None:
    """Wait (bounded) until the worker is inside a run of ``model``."""
    for _ in range(3000):
        if model.started.is_set():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the worker never started a run")


def policy(**overrides: float) -> BatchPolicy:
    values = {
        "max_batch_size": 8,
        "max_queue_delay_s": 0.05,
        "max_queue_size": 64,
        "request_timeout_s": 10.0,
    }
    values.update(overrides)
    return BatchPolicy(**values)  # type: ignore[arg-type]


async def submit_all(
    batcher: Batcher, model: Model, arrays: list[dict[str, np.ndarray]]
) -> list[list[np.ndarray]]:
    async def one(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        checked, rows, signature = validate(model, inputs, 8)
        return await batcher.submit(checked, rows, signature)

    return list(await asyncio.gather(*(one(inputs) for inputs in arrays)))


def test_concurrent_requests_are_merged_and_split_back(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    requests = [
        {
            "x": rng.standard_normal((rows, 4), dtype=np.float32),
            "ids": rng.integers(0, 9, (rows, 3)),
        }
        for rows in (1, 2, 1, 3, 1)
    ]

    async def scenario() -> list[list[np.ndarray]]:
        batcher = Batcher(model, policy(), metrics.for_model("multi"))
        try:
            return await submit_all(batcher, model, requests)
        finally:
            await batcher.close()

    results = loop.run(scenario())
    for inputs, (scaled, shifted, total) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(scaled, inputs["x"] * 2)
        np.testing.assert_array_equal(shifted, inputs["ids"] + 1)
        np.testing.assert_allclose(total, inputs["x"].sum(axis=1), rtol=1e-5)
    assert batch_sizes(metrics, "multi") == (1.0, 8.0)


def test_batches_respect_max_batch_size(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    requests = [
        {"x": np.ones((3, 4), np.float32), "ids": np.ones((3, 3), np.int64)} for _ in range(4)
    ]

    async def scenario() -> None:
        batcher = Batcher(model, policy(), metrics.for_model("multi"))
        try:
            await submit_all(batcher, model, requests)
        finally:
            await batcher.close()

    loop.run(scenario())
    assert batch_sizes(metrics, "multi") == (2.0, 12.0)  # 3+3 rows, then 3+3 rows


def test_different_non_batch_shapes_are_not_merged(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = Model("sequence", model_files.sequence, ["CPUExecutionProvider"])
    requests = [{"x": np.full((1, length), length, np.float32)} for length in (2, 3, 2, 3, 4)]

    async def scenario() -> list[list[np.ndarray]]:
        batcher = Batcher(model, policy(), metrics.for_model("sequence"))
        try:
            return await submit_all(batcher, model, requests)
        finally:
            await batcher.close()

    results = loop.run(scenario())
    for inputs, (y,) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(y, inputs["x"] * 3)
    assert batch_sizes(metrics, "sequence") == (3.0, 5.0)  # lengths 2, 3 and 4 run apart


def test_fixed_first_dim_runs_unbatched(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = Model("fixed", model_files.fixed, ["CPUExecutionProvider"])
    assert not model.batchable
    requests = [{"x": np.full((2, 3), i - 2, np.float32)} for i in range(4)]

    async def scenario() -> list[list[np.ndarray]]:
        batcher = Batcher(model, policy(), metrics.for_model("fixed"))
        try:
            return await submit_all(batcher, model, requests)
        finally:
            await batcher.close()

    results = loop.run(scenario())
    for inputs, (y,) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(y, np.maximum(inputs["x"], 0))
    assert batch_sizes(metrics, "fixed") == (4.0, 4.0)


def test_full_queue_is_refused_at_once(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    inputs = {"x": np.ones((1, 4), np.float32), "ids": np.ones((1, 3), np.int64)}

    async def scenario() -> list[object]:
        batcher = Batcher(
            model, policy(max_queue_size=2, max_queue_delay_s=0.2), metrics.for_model("multi")
        )
        try:
            checked, rows, signature = validate(model, inputs, 8)
            tasks = [
                asyncio.ensure_future(batcher.submit(checked, rows, signature)) for _ in range(3)
            ]
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            await batcher.close()

    outcomes = loop.run(scenario())
    assert isinstance(outcomes[2], QueueFullError)
    assert "queue is full" in str(outcomes[2])
    assert all(isinstance(outcome, list) for outcome in outcomes[:2])


def test_request_timeout(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    model = GatedModel("multi", model_files.multi)
    inputs = {"x": np.ones((1, 4), np.float32), "ids": np.ones((1, 3), np.int64)}

    async def scenario() -> None:
        batcher = Batcher(
            model, policy(max_queue_delay_s=1.0, request_timeout_s=0.05), metrics.for_model("multi")
        )
        try:
            checked, rows, signature = validate(model, inputs, 8)
            # The run never finishes while the gate is shut: the request is not answered.
            with pytest.raises(RequestTimeoutError, match=r"not answered within 0\.05 s"):
                await batcher.submit(checked, rows, signature)
            assert batcher.in_flight == 0
        finally:
            model.gate.set()
            await batcher.close()

    loop.run(scenario())
    depth = metrics.registry.get_sample_value("sluice_queue_depth", {"model": "multi"})
    assert depth == 0.0


def test_lone_request_on_an_idle_worker_is_not_held(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    """Nothing can join a lone request on an idle worker: it runs at once, not after the delay
    (held for the delay, it would outlive its timeout, which is far shorter)."""
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    inputs = {"x": np.ones((1, 4), np.float32), "ids": np.ones((1, 3), np.int64)}

    async def scenario() -> list[np.ndarray]:
        batcher = Batcher(
            model,
            policy(max_queue_delay_s=600.0, request_timeout_s=5.0),
            metrics.for_model("multi"),
        )
        try:
            checked, rows, signature = validate(model, inputs, 8)
            return await batcher.submit(checked, rows, signature)
        finally:
            await batcher.close()

    scaled, _, _ = loop.run(scenario())
    np.testing.assert_array_equal(scaled, inputs["x"] * 2)
    assert batch_sizes(metrics, "multi") == (1.0, 1.0)


def test_requests_merge_while_the_worker_is_busy(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    """Requests that arrive while a batch computes form the next batch, up to the limit."""
    model = GatedModel("multi", model_files.multi)
    requests = [
        {"x": np.full((1, 4), i, np.float32), "ids": np.full((1, 3), i, np.int64)}
        for i in range(12)
    ]

    async def scenario() -> list[list[np.ndarray]]:
        batcher = Batcher(model, policy(max_queue_delay_s=0.0001), metrics.for_model("multi"))
        try:
            first = asyncio.ensure_future(submit_all(batcher, model, requests[:1]))
            await until_running(model)
            rest = asyncio.ensure_future(submit_all(batcher, model, requests[1:]))
            # Far beyond the delay: the queued requests still wait for the busy worker.
            await asyncio.sleep(0.05)
            assert batcher.in_flight == 12
            model.gate.set()
            return (await first) + (await rest)
        finally:
            model.gate.set()
            await batcher.close()

    results = loop.run(scenario())
    for inputs, (scaled, shifted, _) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(scaled, inputs["x"] * 2)
        np.testing.assert_array_equal(shifted, inputs["ids"] + 1)
    # 1 alone on the idle worker; the 11 that queued behind it: 8 (the limit), then 3.
    assert batch_sizes(metrics, "multi") == (3.0, 12.0)


def test_full_batch_starts_before_the_delay(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    """The gathering scheduler is woken by the request that completes a batch."""
    model = Model("multi", model_files.multi, ["CPUExecutionProvider"])
    requests = [
        {"x": np.ones((rows, 4), np.float32), "ids": np.ones((rows, 3), np.int64)}
        for rows in (1, 3, 2, 2)  # 8 rows: one full batch
    ]

    async def scenario() -> list[list[np.ndarray]]:
        # Waiting for the delay would outlive the far shorter request timeout.
        batcher = Batcher(
            model,
            policy(max_queue_delay_s=600.0, request_timeout_s=5.0),
            metrics.for_model("multi"),
        )
        try:
            # Two requests queue together, so the scheduler starts gathering for the first;
            # the two that follow complete the batch and must wake it.
            gathering = asyncio.ensure_future(submit_all(batcher, model, requests[:2]))
            await asyncio.sleep(0.01)
            completing = await submit_all(batcher, model, requests[2:])
            return (await gathering) + completing
        finally:
            await batcher.close()

    assert len(loop.run(scenario())) == 4
    assert batch_sizes(metrics, "multi") == (1.0, 8.0)


def test_other_signatures_do_not_end_the_wait_early(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    """Rows of another signature count towards no batch of the oldest request."""
    model = Model("sequence", model_files.sequence, ["CPUExecutionProvider"])
    requests = [{"x": np.ones((1, 2), np.float32)}] + [
        {"x": np.ones((1, 3), np.float32)} for _ in range(8)
    ]

    async def scenario() -> list[list[np.ndarray]]:
        batcher = Batcher(model, policy(max_queue_delay_s=0.05), metrics.for_model("sequence"))
        try:
            return await submit_all(batcher, model, requests)
        finally:
            await batcher.close()

    results = loop.run(scenario())
    for inputs, (y,) in zip(requests, results, strict=True):
        np.testing.assert_array_equal(y, inputs["x"] * 3)
    assert batch_sizes(metrics, "sequence") == (2.0, 9.0)  # 1 row of length 2, then 8 of 3


def test_each_request_times_out_on_its_own_clock(
    loop: LoopThread, model_files: ModelFiles, metrics: RuntimeMetrics
) -> None:
    """Requests queued at different times expire at their own deadlines, in arrival order; one
    that arrives after the others expired still expires (the sweep re-arms for it)."""
    model = GatedModel("multi", model_files.multi)
    inputs = {"x": np.ones((1, 4), np.float32), "ids": np.ones((1, 3), np.int64)}
    timeout = 0.4

    async def scenario() -> list[str]:
        batcher = Batcher(
            model,
            policy(max_queue_delay_s=5.0, request_timeout_s=timeout),
            metrics.for_model("multi"),
        )
        expired: list[str] = []

        async def one(name: str) -> None:
            checked, rows, signature = validate(model, inputs, 8)
            with pytest.raises(RequestTimeoutError):
                await batcher.submit(checked, rows, signature)
            expired.append(name)

        try:
            first = asyncio.ensure_future(one("first"))  # holds the worker: the gate is shut
            await asyncio.sleep(timeout / 2)
            second = asyncio.ensure_future(one("second"))
            await first
            for _ in range(3):  # let every callback due with the first's expiry run
                await asyncio.sleep(0)
            assert not second.done(), "the second request expired on the first one's clock"
            await second
            await one("last")
            assert batcher.in_flight == 0
            return expired
        finally:
            model.gate.set()
            await batcher.close()

    assert loop.run(scenario()) == ["first", "second", "last"]
