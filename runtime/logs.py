"""How the runtime logs: the log set-up, request ids and the access log.

``__main__`` calls ``configure`` once. The JSON lines carry the fields the operator's lines
carry (``message``, ``timestamp``, ``severity``, ``exc_info`` with a traceback, and each
``extra`` such as ``request_id``), so one log pipeline reads both; ``plain`` and ``full`` are
the operator's text formats. The REST and gRPC adapters take every request's id from
``request_id_for`` and, when the access log is on, write one line per request with
``log_access``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Final

import orjson

FORMATS: Final = ("json", "plain", "full")
LEVELS: Final = ("debug", "info", "warning", "error")
TEXT_FORMATS: Final = {
    "plain": "%(message)s",
    "full": "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s",
}
REQUEST_ID_HEADER: Final = "x-request-id"  # HTTP header and gRPC metadata key
MAX_REQUEST_ID: Final = 128  # longer incoming ids are replaced, not echoed

access_logger = logging.getLogger("sluice.runtime.access")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


def severity(levelno: int) -> str:
    """The operator's ``severity`` value for a log level."""
    if levelno <= logging.DEBUG:
        return "debug"
    if levelno <= logging.INFO:
        return "info"
    if levelno <= logging.WARNING:
        return "warn"
    if levelno <= logging.ERROR:
        return "error"
    return "fatal"


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the operator's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``; a traceback goes into ``exc_info`` as text."""
        entry: dict[str, object] = {"message": record.getMessage()}
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS:
                entry[key] = value
        entry["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        entry["severity"] = severity(record.levelno)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, log_format: str) -> None:
    """Send every log record at ``level`` and above to stderr in ``log_format``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMATS[log_format]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def request_id_for(incoming: str | None) -> str:
    """The id of a request: the client's (or a proxy's) when it sent a usable one, else a new
    UUID. An id is usable when it is printable ASCII without spaces and not too long."""
    if (
        incoming
        and len(incoming) <= MAX_REQUEST_ID
        and incoming.isascii()
        and incoming.isprintable()
        and " " not in incoming
    ):
        return incoming
    return str(uuid.uuid4())


def log_access(
    *,
    protocol: str,
    method: str,
    path: str,
    model: str,
    status: int,
    duration_s: float,
    bytes_in: int,
    bytes_out: int,
    request_id: str,
) -> None:
    """Write one access-log line; ``status`` is the HTTP status, or for gRPC the
    HTTP-equivalent one that ``sluice_requests_total`` counts."""
    access_logger.info(
        "%s %s %d %.1fms %dB model=%s request_id=%s",
        method,
        path,
        status,
        duration_s * 1000,
        bytes_out,
        model or "-",
        request_id,
        extra={
            "protocol": protocol,
            "method": method,
            "path": path,
            "model": model,
            "status": status,
            "duration_s": round(duration_s, 6),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "request_id": request_id,
        },
    )
