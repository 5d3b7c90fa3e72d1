"""Dynamic batching: one queue and one worker thread per model.

The data plane submits validated requests; the batcher merges requests that share a
signature (same inputs, dtypes and non-batch dims) along dim 0, up to ``max_batch_size``
rows, waiting at most ``max_queue_delay_s`` after the oldest request arrived; a lone request
on the idle worker, with no other client sending lately, runs at once. onnxruntime
runs in a worker thread (it releases the GIL) while the event loop keeps accepting and
decoding. While one batch computes the next one gathers, so a loaded server runs full
batches without waiting for the delay. Models that cannot be batched run one request at a
time through the same bounded queue, so queue depth, the bound and timeouts still hold.

The hot path is kept to constant work per request on the event loop: the scheduler is woken
only when a request may complete a batch (or the queue was empty), per-request timeouts are
one sweep timer over the requests in arrival order rather than a timer each, and the worker
thread hands a finished batch back with one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
from sluice.runtime.errors import QueueFullError, RequestTimeoutError
from sluice.runtime.metrics import ModelMetrics
from sluice.runtime.model import Model

Outputs = list[np.ndarray]

# How long one merged batch keeps the scheduler gathering on an idle worker.
_MERGED_MEMORY_S = 0.1


@dataclass(slots=True, eq=False)
class Job:
    """One submitted request waiting for, or inside, a batch."""

    inputs: dict[str, np.ndarray]
    rows: int
    signature: Hashable
    future: asyncio.Future[Outputs]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPolicy:
    """How a model's requests are queued and merged."""

    max_batch_size: int
    max_queue_delay_s: float
    max_queue_size: int
    request_timeout_s: float


class Batcher:
    """The queue and scheduling loop of one model."""

    def __init__(self, model: Model, policy: BatchPolicy, metrics: ModelMetrics) -> None:
        self._model = model
        self._policy = policy
        self._metrics = metrics
        self._merge = model.batchable and policy.max_batch_size > 1
        self._delay = policy.max_queue_delay_s if self._merge else 0.0
        self._max_rows = policy.max_batch_size if self._merge else 1
        self._pending: deque[Job] = deque()
        # Rows of the jobs in _pending: while it is below a full batch no arrival can complete
        # one, so the gathering scheduler is not woken for it.
        self._pending_rows = 0
        # Every unanswered job in arrival order; all share one timeout, so the oldest expires
        # first and one timer armed for it covers them all.
        self._unanswered: deque[Job] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._batch_done: asyncio.Future[None] | None = None
        # When a batch last merged requests: other clients are sending, so for a while a batch
        # is worth gathering even while the worker is idle.
        self._merged_at = float("-inf")
        self._work: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._worker, name=f"onnx-{model.name}", daemon=True)
        self._thread.start()
        self._task = self._loop.create_task(self._schedule(), name=f"batcher-{model.name}")
        self.in_flight = 0
        # Read at scrape time: no per-request gauge updates on the hot path.
        metrics.queue_depth.set_function(lambda: self.in_flight)

    async def submit(
        self, inputs: dict[str, np.ndarray], rows: int, signature: Hashable
    ) -> Outputs:
        """Queue one request and wait for its outputs (in the model's output order).

        Raises QueueFullError at once when the queue is at its bound, RequestTimeoutError when the
        request is not answered within the per-request timeout.
        """
        pending = self._pending
        if len(pending) >= self._policy.max_queue_size:
            raise QueueFullError(
                f"model {self._model.name!r} queue is full "
                f"({self._policy.max_queue_size} requests waiting); retry later"
            )
        future: asyncio.Future[Outputs] = self._loop.create_future()
        job = Job(inputs, rows, signature, future)
        pending.append(job)
        self._pending_rows += rows
        self._unanswered.append(job)
        if self._sweep is None:
            self._arm_sweep(job)
        # The scheduler waits on the event only while the queue is empty or while it gathers a
        # batch; in the second case only a full batch's worth of rows can end the wait early.
        if len(pending) == 1 or self._pending_rows >= self._max_rows:
            self._wake.set()
        self.in_flight += 1
        try:
            return await future
        finally:
            self.in_flight -= 1
            if future.cancelled():  # the caller gave up (a gRPC client's deadline or cancel)
                self._leave_queue(job)

    def _arm_sweep(self, oldest: Job) -> None:
        due = oldest.enqueued + self._policy.request_timeout_s - time.perf_counter()
        self._sweep = self._loop.call_later(max(0.0, due), self._expire_due)

    def _expire_due(self) -> None:
        """Fail every unanswered job whose timeout has passed; re-arm for the next oldest."""
        self._sweep = None
        unanswered = self._unanswered
        now = time.perf_counter()
        timeout = self._policy.request_timeout_s
        while unanswered:
            job = unanswered[0]
            if not job.future.done():
                if job.enqueued + timeout > now:
                    self._arm_sweep(job)
                    return
                self._expire(job)
            unanswered.popleft()

    def _expire(self, job: Job) -> None:
        job.future.set_exception(
            RequestTimeoutError(
                f"request to model {self._model.name!r} not answered within "
                f"{self._policy.request_timeout_s:g} s"
            )
        )
        self._leave_queue(job)

    def _leave_queue(self, job: Job) -> None:
        """Take a job that no batch will answer (expired, or its caller gave up) out of the
        queue at once, so its place is free; a job already in a running batch is not queued,
        and its result is dropped."""
        try:
            self._pending.remove(job)
        except ValueError:
            return
        self._pending_rows -= job.rows

    def _forget_answered(self) -> None:
        """Drop answered jobs from the front of the timeout order (batches take the oldest)."""
        unanswered = self._unanswered
        while unanswered and unanswered[0].future.done():
            unanswered.popleft()

    async def _schedule(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = pending[0]
            if self._delay > 0 and self._pending_rows < self._max_rows:
                # The worker is idle here (batches run one at a time). Waiting can only gain
                # when other clients are sending: a batch merged requests lately, or several
                # are queued. Otherwise (a lone client) run at once, after letting requests
                # that arrived in the same loop turn join.
                if len(pending) > 1 or time.perf_counter() - self._merged_at < _MERGED_MEMORY_S:
                    await self._gather(first)
                else:
                    await asyncio.sleep(0)
            batch = self._take(first.signature)
            if batch:
                if len(batch) > 1:
                    self._merged_at = time.perf_counter()
                await self._execute(batch)

    async def _gather(self, first: Job) -> None:
        """Wait until a full batch of ``first``'s signature is queued or its delay is over."""
        deadline = first.enqueued + self._delay
        while self._pending_rows < self._max_rows or (
            self._rows_like(first.signature) < self._max_rows
        ):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            # A timer that sets the event is cheaper than asyncio.wait_for's task per wake.
            timer = self._loop.call_later(remaining, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    def _rows_like(self, signature: Hashable) -> int:
        return sum(job.rows for job in self._pending if job.signature == signature)

    def _take(self, signature: Hashable) -> list[Job]:
        """Remove and return the oldest jobs of ``signature`` that fit in one batch."""
        batch: list[Job] = []
        rows = 0
        removed = 0
        kept: list[Job] = []
        pending = self._pending
        while pending:
            job = pending.popleft()
            if job.future.done():
                removed += job.rows
                continue
            if job.signature != signature or (batch and rows + job.rows > self._max_rows):
                kept.append(job)
                continue
            batch.append(job)
            rows += job.rows
            if rows >= self._max_rows:
                break
        pending.extendleft(reversed(kept))
        self._pending_rows -= rows + removed
        return batch

    async def _execute(self, batch: list[Job]) -> None:
        done: asyncio.Future[None] = self._loop.create_future()
        self._batch_done = done
        self._work.put(batch)
        await done

    def _worker(self) -> None:
        """The worker thread: compute each batch, hand the outcome back to the event loop."""
        while True:
            batch = self._work.get()
            if batch is None:
                return
            results: list[Outputs] | None = None
            error: Exception | None = None
            try:
                results = self._compute(batch)
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(self._complete, batch, results, error)

    def _complete(
        self, batch: list[Job], results: list[Outputs] | None, error: Exception | None
    ) -> None:
        """On the event loop: answer a batch's requests and let the scheduler go on."""
        if results is None:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error or RuntimeError("batch failed"))
        else:
            for job, outputs in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(outputs)
        self._forget_answered()
        done = self._batch_done
        if done is not None and not done.done():
            done.set_result(None)

    def _compute(self, batch: list[Job]) -> list[Outputs]:
        """Worker thread: merge along dim 0, run, split back; metrics are observed here,
        off the event loop."""
        started = time.perf_counter()
        for job in batch:
            self._metrics.queue_duration.observe(started - job.enqueued)
        if len(batch) == 1:
            results = [self._model.run(batch[0].inputs)]
            rows = batch[0].rows
        else:
            names = batch[0].inputs.keys()
            merged = {name: np.concatenate([job.inputs[name] for job in batch]) for name in names}
            outputs = self._model.run(merged)
            rows = sum(job.rows for job in batch)
            for output in outputs:
                if output.shape[:1] != (rows,):
                    raise RuntimeError(
                        f"model {self._model.name!r} returned dim 0 of {output.shape[:1]} "
                        f"for a batch of {rows} rows; it cannot be batched"
                    )
            offsets = np.cumsum([job.rows for job in batch[:-1]])
            split = [np.split(output, offsets) for output in outputs]
            results = [[parts[i] for parts in split] for i in range(len(batch))]
        self._metrics.batch_size.observe(rows if self._merge else 1)
        self._metrics.compute_duration.observe(time.perf_counter() - started)
        return results

    async def close(self) -> None:
        """Stop the scheduling loop and the worker thread (after the queue has drained)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._work.put(None)
        self._thread.join()
