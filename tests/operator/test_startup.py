"""Unit tests for sluice.operator.startup's logging: kopf's per-event lines go to debug.

The preflight checks need an API server and are tested against the real one, through the
``sluice-operator`` command, in tests/integration/test_startup.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from sluice.operator.startup import PerEventToDebug, configure_logging

PER_EVENT = [
    "Handler 'reconcile_isvc' succeeded.",
    "Creation is processed: 1 succeeded; 0 failed.",
    "Resuming is processed: 2 succeeded; 0 failed.",
]
KEPT = [
    "Handler 'reconcile_isvc' failed temporarily: throttled",
    "Creation is processed: 0 succeeded; 1 failed.",
    "Handler 'reconcile_isvc' succeeded. Extra text",
]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root and kopf loggers back as they were: kopf.configure changes them."""
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    saved = (root.handlers[:], root.level, objects.filters[:])
    yield
    root.handlers[:], objects.filters[:] = saved[0], saved[2]
    root.setLevel(saved[1])


def logged(capsys: pytest.CaptureFixture[str], *, verbose: bool) -> list[dict[str, str]]:
    """Configure logging as the command does, send kopf's lines, return the JSON records."""
    configure_logging(verbose=verbose, log_format="json")
    objects = logging.getLogger("kopf.objects")
    for message in PER_EVENT + KEPT:
        objects.info(message)
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_per_event_success_lines_are_not_logged_at_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = logged(capsys, verbose=False)
    assert [(r["message"], r["severity"]) for r in records] == [(m, "info") for m in KEPT]


@pytest.mark.usefixtures("restore_logging")
def test_per_event_success_lines_are_logged_at_debug_when_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = logged(capsys, verbose=True)
    assert [(r["message"], r["severity"]) for r in records] == [
        *((m, "debug") for m in PER_EVENT),
        *((m, "info") for m in KEPT),
    ]


@pytest.mark.usefixtures("restore_logging")
def test_configuring_twice_installs_one_filter() -> None:
    configure_logging(verbose=False, log_format="plain")
    configure_logging(verbose=False, log_format="json")
    filters = logging.getLogger("kopf.objects").filters
    assert sum(isinstance(f, PerEventToDebug) for f in filters) == 1
