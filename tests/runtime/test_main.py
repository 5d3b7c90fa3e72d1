"""The command line and its environment-variable twins (a contract with the operator)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sluice.runtime.__main__ import build_parser, main, settings_from
from sluice.runtime.settings import ServedModel, Settings


@pytest.fixture(autouse=True)
def _root_logger() -> Iterator[None]:
    """``main`` sets up logging; put the root logger back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def parse(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    return settings_from(build_parser(env or {}).parse_args(argv))


def test_flags() -> None:
    settings = parse(
        [
            "serve", "--model", "a=/m/a.onnx", "--model", "b=/m/b",
            "--http-port", "9000", "--grpc-port", "9001", "--max-batch-size", "4",
            "--max-queue-delay-us", "100", "--max-queue-size", "7", "--request-timeout-s", "2.5",
            "--max-body-bytes", "1000", "--providers", "CPUExecutionProvider",
            "--host", "127.0.0.1",
        ]
    )  # fmt: skip
    assert settings == Settings(
        models=(ServedModel("a", Path("/m/a.onnx")), ServedModel("b", Path("/m/b"))),
        host="127.0.0.1",
        http_port=9000,
        grpc_port=9001,
        max_batch_size=4,
        max_queue_delay_us=100,
        max_queue_size=7,
        request_timeout_s=2.5,
        max_body_bytes=1000,
        providers=("CPUExecutionProvider",),
    )


def test_defaults() -> None:
    settings = parse(["serve", "--model", "a=/a.onnx"])
    assert (settings.host, settings.http_port, settings.grpc_port) == ("0.0.0.0", 8080, 8081)
    assert (settings.max_batch_size, settings.max_queue_delay_us) == (32, 2000)
    assert (settings.max_queue_size, settings.request_timeout_s) == (1024, 30.0)
    assert settings.max_body_bytes == 64 * 1024 * 1024
    assert settings.providers == ()


def test_environment_sets_every_flag_and_flags_win() -> None:
    env = {
        "SLUICE_MODEL": "a=/a.onnx b=/b",
        "SLUICE_HOST": "127.0.0.1",
        "SLUICE_HTTP_PORT": "7000",
        "SLUICE_GRPC_PORT": "7001",
        "SLUICE_MAX_BATCH_SIZE": "16",
        "SLUICE_MAX_QUEUE_DELAY_US": "500",
        "SLUICE_MAX_QUEUE_SIZE": "9",
        "SLUICE_REQUEST_TIMEOUT_S": "3",
        "SLUICE_MAX_BODY_BYTES": "2048",
        "SLUICE_PROVIDERS": "CUDAExecutionProvider CPUExecutionProvider",
    }
    settings = parse(["serve"], env)
    assert [m.name for m in settings.models] == ["a", "b"]
    assert (settings.host, settings.http_port, settings.grpc_port) == ("127.0.0.1", 7000, 7001)
    assert (settings.max_batch_size, settings.max_queue_delay_us, settings.max_queue_size) == (
        16,
        500,
        9,
    )
    assert (settings.request_timeout_s, settings.max_body_bytes) == (3.0, 2048)
    assert settings.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert parse(["serve", "--http-port", "1", "--model", "c=/c"], env).http_port == 1
    assert [m.name for m in parse(["serve", "--model", "c=/c"], env).models] == ["c"]


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["serve", "--model", "noequals"],
        ["serve", "--model", "a=/x", "--model", "a=/y"],
        ["serve", "--model", "a=/x", "--max-batch-size", "0"],
        ["serve", "--model", "a=/x", "--http-port", "eighty"],
        ["serve", "--model", "a=/x", "--log-format", "xml"],
        ["serve", "--model", "a=/x", "--log-level", "loud"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_fetch_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "src.onnx"
    source.write_bytes(b"model")
    dest = tmp_path / "out" / "model.onnx"
    assert main(["fetch", str(source), str(dest)]) == 0
    assert "fetched" in capsys.readouterr().out
    assert main(["fetch", f"file://{source}", str(dest)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert main(["fetch", str(tmp_path / "missing"), str(dest)]) == 1
    assert "no file at" in capsys.readouterr().err


def test_logging_options_their_environment_and_defaults() -> None:
    serve = ["serve", "--model", "a=/a"]
    args = build_parser({}).parse_args(serve)
    assert (args.log_format, args.log_level, args.access_log) == ("json", "info", False)
    env = {"SLUICE_LOG_FORMAT": "full", "SLUICE_LOG_LEVEL": "DEBUG", "SLUICE_ACCESS_LOG": "true"}
    args = build_parser(env).parse_args(serve)
    assert (args.log_format, args.log_level, args.access_log) == ("full", "debug", True)
    assert settings_from(args).access_log
    flags = ["--log-format", "plain", "--log-level", "warning", "--no-access-log"]
    args = build_parser(env).parse_args([*serve, *flags])
    assert (args.log_format, args.log_level, args.access_log) == ("plain", "warning", False)
    assert not settings_from(args).access_log
    fetch = build_parser({}).parse_args(["fetch", "s3://b/k", "/m", "--log-level", "debug"])
    assert (fetch.log_format, fetch.log_level) == ("json", "debug")


@pytest.mark.parametrize(
    ("name", "value"),
    [("SLUICE_LOG_FORMAT", "xml"), ("SLUICE_LOG_LEVEL", "loud"), ("SLUICE_ACCESS_LOG", "maybe")],
)
def test_a_bad_logging_variable_exits_2_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve", "--model", "a=/a"]) == 2
    assert name in capsys.readouterr().err


def test_fetch_checks_sha256_from_the_flag_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src.onnx"
    source.write_bytes(b"model")
    digest = hashlib.sha256(b"model").hexdigest()
    dest = tmp_path / "out" / "model.onnx"
    assert main(["fetch", str(source), str(dest), "--sha256", "0" * 64]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert not dest.parent.exists() or not any(dest.parent.iterdir())  # nothing half-written
    assert main(["fetch", str(source), str(dest), "--sha256", digest]) == 0
    assert "fetched" in capsys.readouterr().out
    assert dest.read_bytes() == b"model"
    source.unlink()  # a DEST with the expected checksum is left alone: the source is not read
    monkeypatch.setenv("SLUICE_SHA256", digest)
    assert main(["fetch", str(source), str(dest)]) == 0
    assert "already up to date" in capsys.readouterr().out
    monkeypatch.setenv("SLUICE_SHA256", "1" * 64)
    assert main(["fetch", str(source), str(dest)]) == 1
    assert "no file at" in capsys.readouterr().err
    assert dest.read_bytes() == b"model"
