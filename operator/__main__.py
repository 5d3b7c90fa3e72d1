"""The ``sluice-operator`` command: parse arguments, configure logging, run.

The only place that reads the command line and the environment; everything else receives
``running.Options``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path

import kopf

from .running import Options, run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with defaults for running in a cluster."""
    parser = argparse.ArgumentParser(
        prog="sluice-operator",
        description="Reconcile InferenceService resources into GPU inference deployments.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig file; in-cluster ServiceAccount credentials when omitted",
    )
    parser.add_argument(
        "--liveness-port", type=int, default=None, help="serve GET /healthz on this port"
    )
    parser.add_argument("--liveness-host", default="0.0.0.0", help="address for /healthz")
    parser.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="act without holding the Lease (a single local instance only)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "sluice-system"),
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE or sluice-system)",
    )
    parser.add_argument("--lease-name", default="sluice-operator", help="the Lease's name")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=600.0,
        help="reconcile every InferenceService this often, besides watch events",
    )
    parser.add_argument(
        "--log-format", choices=["json", "plain", "full"], default="json", help="log line format"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice-operator`` console script."""
    args = parse_args(argv)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    options = Options(
        namespaces=tuple(dict.fromkeys(args.namespace)),
        kubeconfig=args.kubeconfig,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        liveness_host=args.liveness_host,
        liveness_port=args.liveness_port,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        resync_seconds=args.resync_seconds,
    )
    return asyncio.run(run(options))


if __name__ == "__main__":
    raise SystemExit(main())
