"""The one table that maps data-plane errors to HTTP status and gRPC code."""

from __future__ import annotations

import logging

import grpc
import pytest
from sluice.runtime.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    RequestTimeoutError,
    answer_for,
    status_for,
)


@pytest.mark.parametrize(
    ("error", "http", "code"),
    [
        (InvalidInputError("x"), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (PayloadTooLargeError("x"), 413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ModelNotFoundError("x"), 404, grpc.StatusCode.NOT_FOUND),
        (ModelNotReadyError("x"), 503, grpc.StatusCode.UNAVAILABLE),
        (QueueFullError("x"), 503, grpc.StatusCode.UNAVAILABLE),
        (RequestTimeoutError("x"), 504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (RuntimeError("x"), 500, grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(error: Exception, http: int, code: grpc.StatusCode) -> None:
    assert status_for(error) == (http, code)


def test_an_error_of_the_table_is_answered_with_its_text_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, message = answer_for(QueueFullError("queue is full"), "id-1", "POST /v2")
    assert (status.http, message) == (503, "queue is full")
    assert not caplog.records


def test_an_internal_error_is_logged_with_its_traceback_under_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = ValueError("secret detail")
    try:
        raise error
    except ValueError as exc:
        status, message = answer_for(exc, "id-2", "POST /v2/models/m/infer")
    assert status.grpc == grpc.StatusCode.INTERNAL
    assert "id-2" in message
    assert "secret detail" not in message  # internals stay in the log
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.__dict__["request_id"] == "id-2"
    assert record.exc_info is not None
    assert record.exc_info[1] is error
    assert "POST /v2/models/m/infer" in record.getMessage()
