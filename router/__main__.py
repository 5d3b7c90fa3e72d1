"""The ``sluice-router`` command: Envoy and its control plane, in front of a model's variants.

This is the only module that reads arguments and the environment. Two modes: Kubernetes
(``--routes-configmap NAME``: the route table's ConfigMap and the variants' EndpointSlices in
``--namespace``, watched through the API) and standalone (``--routes-file`` and
``--endpoints-file``, re-read when they change). A bad flag or an unusable file at start is
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, NoReturn

from sluice.contracts import ports
from sluice.router import envoy_config, logs
from sluice.router.envoy_config import Listening
from sluice.router.envoy_process import EnvoyError, find_envoy
from sluice.router.running import RouterSettings, run
from sluice.router.source import Source
from sluice.router.static_source import StaticSource

PROGRAM: Final = "sluice-router"
NAMESPACE_ENV: Final = "POD_NAMESPACE"
CONFIG_DIR: Final = Path("/var/run/sluice-router")


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit status 2, with no usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to 65535)")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _workers(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a thread count (1 or more)")
    return value


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser; ``--namespace`` defaults to ``$POD_NAMESPACE``."""
    parser = _Parser(prog=PROGRAM, description=__doc__)
    parser.add_argument(
        "--namespace",
        default=env.get(NAMESPACE_ENV),
        help=f"the InferenceService's namespace (Kubernetes mode) [{NAMESPACE_ENV}]",
    )
    parser.add_argument("--routes-configmap", metavar="NAME", help="the route table's ConfigMap")
    parser.add_argument("--routes-file", type=Path, help="the route table's JSON (standalone)")
    parser.add_argument(
        "--endpoints-file", type=Path, help="the Services' endpoints as JSON (standalone)"
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=CONFIG_DIR,
        help=f"where Envoy's configuration files go (default {CONFIG_DIR})",
    )
    parser.add_argument("--address", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    for flag, default, what in (
        ("--http-port", ports.HTTP_PORT, "HTTP/1.1 and h2c clients"),
        ("--grpc-port", ports.GRPC_PORT, "gRPC clients"),
        ("--metrics-port", ports.ROUTER_METRICS_PORT, "/metrics and /ready"),
        ("--admin-port", envoy_config.ADMIN_PORT, "Envoy's admin interface, on 127.0.0.1"),
    ):
        parser.add_argument(flag, type=_port, default=default, help=f"{what} (default {default})")
    parser.add_argument(
        "--drain-seconds",
        type=_seconds,
        default=10.0,
        help="on SIGTERM, how long requests in flight may finish (default 10)",
    )
    parser.add_argument(
        "--concurrency",
        type=_workers,
        help="Envoy's worker threads (default: Envoy's, one per CPU core of the machine)",
    )
    parser.add_argument("--envoy", metavar="PATH", help="the Envoy binary (default: packaged)")
    parser.add_argument("--log-level", choices=logs.LEVELS, default="info")
    return parser


def source_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Source:
    """The source the flags name; a bad combination or an unusable file is a parser error."""
    standalone = args.routes_file is not None or args.endpoints_file is not None
    if standalone == (args.routes_configmap is not None):
        parser.error("give either --routes-configmap or --routes-file and --endpoints-file")
    if standalone:
        if args.routes_file is None or args.endpoints_file is None:
            parser.error("standalone mode needs both --routes-file and --endpoints-file")
        source = StaticSource(args.routes_file, args.endpoints_file)
        try:
            source.read()
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        return source
    if not args.namespace:
        parser.error(f"--routes-configmap needs --namespace or ${NAMESPACE_ENV}")
    # Imported here: standalone mode runs without the Kubernetes client.
    from sluice.router.kube_source import KubeSource

    try:
        kube: Source = KubeSource(args.namespace, args.routes_configmap)
    except Exception as exc:  # no in-cluster credentials and no kubeconfig: say so, exit 2
        parser.error(f"cannot reach the Kubernetes API: {exc}")
    return kube


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice-router`` console script."""
    parser = build_parser(os.environ)
    args = parser.parse_args(argv)
    source = source_from(args, parser)
    try:
        envoy = find_envoy(args.envoy)
    except EnvoyError as exc:
        parser.error(str(exc))
    logs.configure(args.log_level)
    settings = RouterSettings(
        config_dir=args.config_dir,
        listening=Listening(
            address=args.address,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            admin_port=args.admin_port,
        ),
        envoy=envoy,
        envoy_concurrency=args.concurrency,
        envoy_log_level=args.log_level,
        drain_seconds=args.drain_seconds,
    )
    try:
        settings.config_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--config-dir {settings.config_dir}: {exc.strerror}")
    return run(source, settings)


if __name__ == "__main__":
    sys.exit(main())
