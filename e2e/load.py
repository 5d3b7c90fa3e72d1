"""Continuous inference traffic for the whole-system tests: a few clients that each keep one
connection (as production clients do) and send requests back to back until stopped, counting
every answer by the model version that gave it and every failure with its reason.

A rollout or a scale-down "loses no request" when the report has no failure: each request
either got a full, correct answer from one of the versions or counts as failed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from e2e.inference import GrpcModel, HttpModel

# A pause between one client's requests: steady traffic that leaves this 2-core machine's
# CPU to the pods being rolled.
PAUSE_S = 0.01


@dataclass
class Report:
    """What the clients saw."""

    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Requests sent."""
        return sum(self.answers.values()) + len(self.failures)


class Load:
    """``clients`` threads, each with its own client made by ``connect``, sending ``batch``
    until ``stop``; each answer is named by ``classify`` (e.g. which model version gave it)."""

    def __init__(
        self,
        connect: Callable[[], HttpModel | GrpcModel],
        batch: np.ndarray,
        classify: Callable[[np.ndarray], str],
        *,
        clients: int = 3,
    ) -> None:
        self._connect = connect
        self._batch = batch
        self._classify = classify
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.report = Report()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> Report:
        """Stop every client after its current request; the report."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.report

    def wait_answers(self, count: int, label: str | None = None, timeout: float = 60) -> None:
        """Wait until ``count`` more answers than now have come back (named ``label``, when
        given)."""

        def answered() -> int:
            answers = self.report.answers
            return answers[label] if label is not None else sum(answers.values())

        target = answered() + count
        deadline = time.monotonic() + timeout
        while answered() < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} answers in {timeout:.0f}s: {self.report}")
            time.sleep(0.05)

    def _run(self) -> None:
        model = self._connect()
        try:
            while not self._stopping.is_set():
                try:
                    label = self._classify(model.infer(self._batch))
                except Exception as error:  # every failure is counted, whatever its kind
                    with self._lock:
                        self.report.failures.append(f"{type(error).__name__}: {error}")
                    model.close()
                    model = self._connect()
                else:
                    with self._lock:
                        self.report.answers[label] += 1
                time.sleep(PAUSE_S)
        finally:
            model.close()
