"""The one table that maps data-plane errors to HTTP status and gRPC code."""

from __future__ import annotations

import grpc
import pytest
from sluice.runtime.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    RequestTimeoutError,
    message_for,
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


def test_messages() -> None:
    assert message_for(QueueFullError("queue is full")) == "queue is full"
    assert message_for(ValueError("bad")) == "internal error: ValueError: bad"
