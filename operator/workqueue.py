"""A queue of keys waiting to be reconciled, and the worker threads that drain it.

The shape of client-go's workqueue and controller-runtime's controller: the kopf event handlers
(``handlers.py``) and the periodic resync only ``add`` keys; ``Workers``, started by
``running.py``, take them one at a time and call the reconcile function. The queue knows
nothing of Kubernetes, and reconcile knows nothing of queueing.

What it guarantees:

* a waiting key is queued once, however often it is added: a burst of watch events for one
  InferenceService and its children costs one run;
* a key is never handed to two workers at once: added while a worker has it, it is queued
  again when that worker is done, so the change is not lost and runs never overlap;
* after a ``TemporaryError`` the key comes back after the longer of the delay the error
  carries (a Retry-After, say) and a per-key exponential back-off; a success resets it;
* the reconcile function says when to look again (requeue-after), and the key comes back then.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .errors import PermanentError, TemporaryError

K = TypeVar("K", bound=Hashable)

BASE_DELAY = 0.5  # seconds before the first retry of a failed key
MAX_DELAY = 300.0  # the back-off never waits longer than this

log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Keys to process: collapsing, never handed out twice at once, with delayed adds."""

    def __init__(
        self,
        *,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # queued, or to be queued when its worker is done
        self._processing: set[K] = set()
        self._waiting: dict[K, float] = {}  # key -> when it is due (clock seconds)
        self._timers: list[tuple[float, int, K]] = []  # a heap; entries may be stale
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._closed = False

    def __len__(self) -> int:
        """Keys ready to be taken now."""
        with self._cond:
            return len(self._queue)

    def add(self, key: K) -> None:
        """Queue ``key`` now, unless it is already queued."""
        with self._cond:
            self._add(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed; an earlier time already set wins."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._closed:
                return
            due = self._clock() + delay
            current = self._waiting.get(key)
            if current is not None and current <= due:
                return
            self._waiting[key] = due
            heapq.heappush(self._timers, (due, next(self._sequence), key))
            self._cond.notify()

    def retry(self, key: K, delay: float = 0.0) -> float:
        """Queue a key whose run failed: after ``delay`` or the key's back-off, whichever is
        longer; each failure in a row doubles the back-off. Returns the wait chosen."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        backoff = min(self._base_delay * 2.0**failures, self._max_delay)
        wait = max(delay, backoff)
        self.add_after(key, wait)
        return wait

    def forget(self, key: K) -> None:
        """Reset the key's back-off after a successful run."""
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> K | None:
        """Take the next key, waiting for one; None once closed or after ``timeout`` seconds.
        The caller owns the key until it calls ``done``."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._promote_due()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return None
                waits = [t - now for t in (deadline, self._next_due()) if t is not None]
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: K) -> None:
        """The worker is finished with ``key``; queue it again if it was added meanwhile."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def close(self) -> None:
        """Stop handing out keys, queued ones included (a stopping operator leaves them to
        the next leader, which reconciles everything anyway): every ``get`` returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _add(self, key: K) -> None:
        if self._closed or key in self._dirty:
            return
        # A run now decides afresh when to look next; a pending timer would only add a run.
        self._waiting.pop(key, None)
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._cond.notify()

    def _next_due(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def _promote_due(self) -> None:
        """Move keys whose time has come from the timers into the queue."""
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._waiting.get(key) == due:
                del self._waiting[key]
                self._add(key)


class Workers(Generic[K]):
    """A fixed number of threads, each taking keys from ``queue`` and running ``process``.

    ``process`` returns seconds until the key should be looked at again, or None. A
    ``TemporaryError`` retries the key with back-off; a ``PermanentError`` is logged and the
    key waits for its next event; anything else is a bug, logged with its traceback and
    retried with back-off, as controller-runtime does, so one bad object cannot stop the rest.
    """

    def __init__(
        self,
        queue: WorkQueue[K],
        process: Callable[[K], float | None],
        *,
        count: int,
        name: str = "reconcile",
    ) -> None:
        self._queue = queue
        self._process = process
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]

    def start(self) -> None:
        """Start the threads."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float) -> None:
        """Close the queue and wait up to ``timeout`` seconds for runs in progress to end."""
        self._queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def handle(self, key: K) -> None:
        """Process one key taken from the queue, decide when it comes back, release it."""
        try:
            again = self._process(key)
        except TemporaryError as exc:
            wait = self._queue.retry(key, exc.delay)
            log.info("%s: %s; retrying in %.1fs", key, exc, wait)
        except PermanentError as exc:
            self._queue.forget(key)
            log.warning("%s: %s", key, exc)
        except Exception:
            wait = self._queue.retry(key)
            log.exception("%s: unexpected error; retrying in %.1fs", key, wait)
        else:
            self._queue.forget(key)
            if again is not None:
                self._queue.add_after(key, again)
        finally:
            self._queue.done(key)

    def _loop(self) -> None:
        while (key := self._queue.get()) is not None:
            self.handle(key)
