"""The ``sluice-runtime`` command: ``serve`` the models, or ``fetch`` one into place.

This is the only module that reads arguments and the environment. Every ``serve`` flag can
also be set as ``SLUICE_<FLAG>`` (``--http-port`` is ``SLUICE_HTTP_PORT``; ``SLUICE_MODEL``
holds space-separated ``NAME=PATH`` pairs); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvloop
from sluice.runtime.app import create_app
from sluice.runtime.fetching import FetchError, fetch
from sluice.runtime.settings import ModelSpec, Settings

log = logging.getLogger("sluice.runtime")

# flag name -> (type, default) for every serve flag; --model is handled on its own.
SERVE_FLAGS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "host": (str, "0.0.0.0"),
    "http-port": (int, 8080),
    "grpc-port": (int, 8081),
    "max-batch-size": (int, 32),
    "max-queue-delay-us": (int, 2000),
    "max-queue-size": (int, 1024),
    "request-timeout-s": (float, 30.0),
    "max-body-bytes": (int, 64 * 1024 * 1024),
}


def env_name(flag: str) -> str:
    """``max-batch-size`` -> ``SLUICE_MAX_BATCH_SIZE``."""
    return "SLUICE_" + flag.upper().replace("-", "_")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``env`` where set."""
    parser = argparse.ArgumentParser(prog="sluice-runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve ONNX models over HTTP and gRPC (v2)")
    env_models = env.get(env_name("model"), "").split()
    serve.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help=f"a model to serve (repeatable); PATH is an .onnx file or a folder holding "
        f"model.onnx [{env_name('model')}, space-separated]",
    )
    for flag, (kind, default) in SERVE_FLAGS.items():
        name = env_name(flag)
        serve.add_argument(
            f"--{flag}",
            type=kind,
            default=kind(env[name]) if name in env else default,
            help=f"[{name}] (default {default})",
        )
    providers = env.get(env_name("providers"), "").replace(",", " ").split()
    serve.add_argument(
        "--providers",
        nargs="+",
        default=providers,
        metavar="PROVIDER",
        help="onnxruntime execution providers in order of preference, e.g. "
        "CUDAExecutionProvider CPUExecutionProvider (default: TensorRT, CUDA when available, "
        f"then CPU) [{env_name('providers')}]",
    )
    serve.set_defaults(env_models=env_models)

    fetch_cmd = commands.add_parser("fetch", help="fetch a model file to DEST, atomically")
    fetch_cmd.add_argument("uri", help="file://, a plain path, http(s):// or s3://BUCKET/KEY")
    fetch_cmd.add_argument("dest", type=Path, help="where the model file goes")
    fetch_cmd.add_argument(
        "--sha256",
        default=env.get(env_name("sha256")),
        help=f"expected hex SHA-256 of the file [{env_name('sha256')}]",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed ``serve`` arguments."""
    texts = args.model if args.model is not None else args.env_models
    return Settings(
        models=tuple(ModelSpec.parse(text) for text in texts),
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        request_timeout_s=args.request_timeout_s,
        max_body_bytes=args.max_body_bytes,
        providers=tuple(args.providers),
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
        ", ".join(spec.name for spec in settings.models),
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = build_parser(os.environ)
    args = parser.parse_args(argv)
    if args.command == "fetch":
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
