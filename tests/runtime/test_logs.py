"""The runtime's log lines: the operator's JSON fields, the text formats, request ids."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator

import orjson
import pytest
from kopf._core.actions.loggers import LogFormat, make_formatter
from sluice.runtime.logs import JsonFormatter, configure, request_id_for, severity


def _record(level: int = logging.ERROR) -> logging.LogRecord:
    try:
        raise ValueError("broken")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("sluice.runtime", level, __file__, 1, "answer %s", ("x",), exc_info)
    record.request_id = "id-1"
    return record


def test_json_lines_have_the_operators_fields() -> None:
    """The operator logs through kopf's JSON formatter; the runtime's line for the same
    record has the same fields and values, so one log pipeline reads both."""
    operator = orjson.loads(make_formatter(LogFormat.JSON).format(_record()))
    runtime = orjson.loads(JsonFormatter().format(_record()))
    assert (
        set(runtime)
        == set(operator)
        == {
            "message",
            "exc_info",
            "request_id",
            "timestamp",
            "severity",
        }
    )
    for field in ("message", "exc_info", "request_id", "severity"):
        assert runtime[field] == operator[field]
    assert runtime["message"] == "answer x"
    assert "ValueError: broken" in runtime["exc_info"]


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
    ],
)
def test_severity_names_are_the_operators(level: int, name: str) -> None:
    assert severity(level) == name
    assert orjson.loads(make_formatter(LogFormat.JSON).format(_record(level)))["severity"] == name


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level put back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("log_format", "expected"),
    [
        ("plain", "answer x"),
        ("full", "] sluice.runtime       [ERROR   ] answer x"),
    ],
)
def test_text_formats_are_the_operators(
    root_logger: logging.Logger, log_format: str, expected: str
) -> None:
    configure("warning", log_format)
    [handler] = root_logger.handlers
    line = handler.format(_record())
    assert line.splitlines()[0].endswith(expected)
    assert "ValueError: broken" in line  # the traceback follows the message
    kopf_line = make_formatter(LogFormat[log_format.upper()]).format(_record())
    assert _untimed(line) == _untimed(kopf_line)


def _untimed(line: str) -> str:
    return re.sub(r"^\[[^]]*\] ", "", line)


def test_configure_sets_the_level(root_logger: logging.Logger) -> None:
    configure("debug", "json")
    assert root_logger.level == logging.DEBUG
    assert isinstance(root_logger.handlers[0].formatter, JsonFormatter)
    configure("error", "json")
    assert root_logger.level == logging.ERROR


def test_a_usable_request_id_is_kept() -> None:
    assert request_id_for("a1b2-c3d4") == "a1b2-c3d4"
    assert request_id_for("0af7651916cd43dd8448eb211c80319c") == "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 129, "caf\u00e9", "tab\there"])
def test_a_missing_or_unusable_request_id_is_replaced_by_a_new_uuid(incoming: str | None) -> None:
    replaced = request_id_for(incoming)
    assert replaced != incoming
    assert uuid.UUID(replaced).version == 4
    assert request_id_for(incoming) != replaced  # a new one each time
