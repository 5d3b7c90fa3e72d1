"""Errors of the inference data plane, and the one table that maps them to transports.

The data plane raises these; the REST and gRPC adapters never choose a status themselves:
they look the exception up in ``ERROR_STATUS`` through ``status_for``, so an error means the
same thing on both protocols and in the ``code`` label of ``sluice_requests_total``. They
answer with ``answer_for``, which also logs every error outside the table, a bug of the
server, with its traceback and the request id the client is told.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import grpc

log = logging.getLogger("sluice.runtime")


class InferenceError(Exception):
    """Base of every error the data plane reports to a client; the message names the problem."""


class InvalidInputError(InferenceError):
    """The request is malformed or does not match the model (name, datatype, shape, payload)."""


class PayloadTooLargeError(InvalidInputError):
    """The request body is larger than the configured limit."""


class ModelNotFoundError(InferenceError):
    """No model of that name is served here."""


class ModelNotReadyError(InferenceError):
    """The model is still loading, or the server is draining for shutdown."""


class QueueFullError(InferenceError):
    """The model's request queue is at its bound; the client should retry elsewhere or later."""


class RequestTimeoutError(InferenceError):
    """The request waited and ran longer than the per-request timeout."""


class Status(NamedTuple):
    """How one error class is reported: HTTP status and gRPC status code."""

    http: int
    grpc: grpc.StatusCode


ERROR_STATUS: dict[type[BaseException], Status] = {
    PayloadTooLargeError: Status(413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    InvalidInputError: Status(400, grpc.StatusCode.INVALID_ARGUMENT),
    ModelNotFoundError: Status(404, grpc.StatusCode.NOT_FOUND),
    ModelNotReadyError: Status(503, grpc.StatusCode.UNAVAILABLE),
    QueueFullError: Status(503, grpc.StatusCode.UNAVAILABLE),
    RequestTimeoutError: Status(504, grpc.StatusCode.DEADLINE_EXCEEDED),
}

INTERNAL = Status(500, grpc.StatusCode.INTERNAL)
OK = Status(200, grpc.StatusCode.OK)


def status_for(exc: BaseException) -> Status:
    """Return the status for ``exc``: the entry of its nearest class in the table, else 500."""
    for cls in type(exc).__mro__:
        status = ERROR_STATUS.get(cls)
        if status is not None:
            return status
    return INTERNAL


def answer_for(exc: BaseException, request_id: str, where: str) -> tuple[Status, str]:
    """Return the status and the client-facing message for ``exc``, raised answering the
    request ``request_id`` to ``where`` (an HTTP method and path, or a gRPC method).

    The message of an error in the table is its own text. Any other exception is an internal
    error: its traceback is logged under the request id, and the client's message names that
    id (and no internals), so a report from the client leads to the log line.
    """
    status = status_for(exc)
    if status is not INTERNAL:
        return status, str(exc)
    log.error(
        "internal error answering %s, request id %s",
        where,
        request_id,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    return status, f"internal error; the server logged it under request id {request_id}"
