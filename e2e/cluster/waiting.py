"""Bounded polling for tests and tools that wait on the cluster to converge."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], *, timeout: float = 60, interval: float = 0.5, what: str
) -> T:
    """Call ``condition`` until it returns something truthy; fail after ``timeout`` seconds,
    saying what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {result!r}"
            )
        time.sleep(interval)
