"""The ``sluice-runtime`` command: ``serve`` the models, or ``fetch`` one into place.

This is the only module that reads arguments and the environment. The parser is built from
``sluice.contracts.flags``, the table the operator renders pod commands from. Every ``serve``
flag can also be set as ``SLUICE_<FLAG>`` (``--http-port`` is ``SLUICE_HTTP_PORT``;
``SLUICE_MODEL`` holds space-separated ``NAME=PATH`` pairs); a flag on the command line wins.
Both commands take ``--log-format`` and ``--log-level``; logging is set up here, once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import uvloop
from sluice.contracts import flags
from sluice.contracts.flags import env_name
from sluice.runtime import logs
from sluice.runtime.app import create_app
from sluice.runtime.fetching import FetchError, fetch
from sluice.runtime.settings import ServedModel, Settings

log = logging.getLogger("sluice.runtime")

LOG_FORMAT = "log-format"
LOG_LEVEL = "log-level"
ACCESS_LOG = "access-log"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _env_choice(env: Mapping[str, str], flag: str, choices: Sequence[str], default: str) -> str:
    value = env.get(env_name(flag), default).lower()
    if value not in choices:
        raise ValueError(f"{env_name(flag)} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _env_switch(env: Mapping[str, str], flag: str) -> bool:
    value = env.get(env_name(flag), "").lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{env_name(flag)} must be true or false, not {value!r}")
    return value in _TRUE


def add_log_flags(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """``--log-format`` (the operator's formats, JSON by default) and ``--log-level``."""
    parser.add_argument(
        f"--{LOG_FORMAT}",
        choices=logs.FORMATS,
        default=_env_choice(env, LOG_FORMAT, logs.FORMATS, "json"),
        help=f"log line format: JSON, the message only, or time, logger, level and message "
        f"[{env_name(LOG_FORMAT)}] (default json)",
    )
    parser.add_argument(
        f"--{LOG_LEVEL}",
        choices=logs.LEVELS,
        default=_env_choice(env, LOG_LEVEL, logs.LEVELS, "info"),
        help=f"least severe level logged [{env_name(LOG_LEVEL)}] (default info)",
    )


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``env`` where set."""
    parser = argparse.ArgumentParser(prog=flags.PROGRAM, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(flags.SERVE, help="serve ONNX models over HTTP and gRPC (v2)")
    env_models = env.get(env_name(flags.MODEL), "").split()
    serve.add_argument(
        f"--{flags.MODEL}",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help=f"a model to serve (repeatable); PATH is an .onnx file or a folder holding "
        f"model.onnx [{env_name(flags.MODEL)}, space-separated]",
    )
    for flag in flags.SERVE_FLAGS:
        serve.add_argument(
            flag.option,
            type=flag.parse,
            default=flag.parse(env[flag.env]) if flag.env in env else flag.default,
            help=f"{flag.help} [{flag.env}] (default {flag.default})",
        )
    providers = env.get(env_name(flags.PROVIDERS), "").replace(",", " ").split()
    serve.add_argument(
        f"--{flags.PROVIDERS}",
        nargs="+",
        default=providers,
        metavar="PROVIDER",
        help="onnxruntime execution providers in order of preference, e.g. "
        "CUDAExecutionProvider CPUExecutionProvider (default: TensorRT, CUDA when available, "
        f"then CPU) [{env_name(flags.PROVIDERS)}]",
    )
    serve.add_argument(
        f"--{ACCESS_LOG}",
        action=argparse.BooleanOptionalAction,
        default=_env_switch(env, ACCESS_LOG),
        help="log one line per request: method, path or RPC, model, status, duration, bytes "
        f"and request id [{env_name(ACCESS_LOG)}=true] (default off)",
    )
    add_log_flags(serve, env)
    serve.set_defaults(env_models=env_models)

    fetch_cmd = commands.add_parser(flags.FETCH, help="fetch a model file to DEST, atomically")
    fetch_cmd.add_argument("uri", help="file://, a plain path, http(s):// or s3://BUCKET/KEY")
    fetch_cmd.add_argument("dest", type=Path, help="where the model file goes")
    fetch_cmd.add_argument(
        f"--{flags.SHA256}",
        default=env.get(env_name(flags.SHA256)),
        help=f"expected hex SHA-256 of the file [{env_name(flags.SHA256)}]",
    )
    add_log_flags(fetch_cmd, env)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed ``serve`` arguments."""
    texts = args.model if args.model is not None else args.env_models
    return Settings(
        models=tuple(ServedModel.parse(text) for text in texts),
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        request_timeout_s=args.request_timeout_s,
        max_body_bytes=args.max_body_bytes,
        providers=tuple(args.providers),
        access_log=args.access_log,
    )


async def serve(settings: Settings) -> None:
    """Run the servers until SIGTERM or SIGINT, then drain and return."""
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await app.start()
    log.info(
        "serving %s on http %s:%d and grpc %s:%d",
        ", ".join(model.name for model in settings.models),
        settings.host,
        app.http_port,
        settings.host,
        app.grpc_port,
    )
    await stop.wait()
    log.info("draining: readiness is false, finishing accepted requests")
    await app.drain()
    log.info("drained; exiting")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice-runtime`` console script."""
    try:
        parser = build_parser(os.environ)
    except ValueError as exc:
        print(f"{flags.PROGRAM}: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if args.command == flags.FETCH:
        try:
            changed = fetch(args.uri, args.dest, sha256=args.sha256)
        except (FetchError, OSError) as exc:
            print(f"sluice-runtime fetch: {exc}", file=sys.stderr)
            return 1
        print(f"{args.dest}: {'fetched' if changed else 'already up to date'}")
        return 0
    try:
        settings = settings_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        uvloop.run(serve(settings))
    except Exception as exc:  # the process reports why it cannot serve, and exits 1
        log.error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
