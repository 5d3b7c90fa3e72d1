"""The router's log lines: one JSON object per line, in the fields the operator's and the
runtime's lines carry (``message``, ``timestamp``, ``severity``, ``logger``, ``exc_info``), so
one log pipeline reads all of them, Envoy's own lines included (``envoy_process.LOG_FORMAT``).
``__main__`` calls ``configure`` once.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Final

LEVELS: Final = ("debug", "info", "warning", "error")
_SEVERITIES: Final = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
}


class JsonFormatter(logging.Formatter):
    """Renders a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """``record`` as JSON; a traceback goes into ``exc_info`` as text."""
        entry: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": _SEVERITIES.get(record.levelno, "fatal"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str) -> None:
    """Send records at ``level`` and above to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
