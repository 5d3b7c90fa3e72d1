"""The ``sluice-operator`` command: parse arguments, configure logging, run.

The only place that reads the command line and the environment (``kube.resolve_config``
picks the credentials from them as kubectl does); everything else receives
``running.Options``. A start-up failure (``StartupError``) ends the process with one line on
stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from .errors import StartupError
from .kube import resolve_config
from .leadership import LeaseSettings
from .pods import DEFAULT_IMAGES, Images
from .running import Options, run
from .startup import configure_logging


def _image(value: str) -> str:
    """An image reference as given; an empty one would make every pod invalid."""
    if not value.strip() or value != value.strip():
        raise argparse.ArgumentTypeError(f"not an image reference: {value!r}")
    return value


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
        help="kubeconfig file (default: the files in $KUBECONFIG, else the in-cluster "
        "ServiceAccount, else ~/.kube/config)",
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
        "--lease-duration",
        type=float,
        default=LeaseSettings.lease_duration,
        help="seconds a standby waits on an unrenewed Lease before taking it",
    )
    parser.add_argument(
        "--renew-deadline",
        type=float,
        default=LeaseSettings.renew_deadline,
        help="seconds the leader keeps acting without renewing (less than --lease-duration)",
    )
    parser.add_argument(
        "--retry-period",
        type=float,
        default=LeaseSettings.retry_period,
        help="seconds between attempts to take or renew the Lease",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=600.0,
        help="reconcile every InferenceService this often, besides watch events",
    )
    parser.add_argument(
        "--runtime-image",
        type=_image,
        default=DEFAULT_IMAGES.runtime,
        metavar="IMAGE",
        help="image of Sluice's runtime, for InferenceServices that name no image, and of "
        f"every model download step (default: {DEFAULT_IMAGES.runtime})",
    )
    parser.add_argument(
        "--triton-image",
        type=_image,
        default=DEFAULT_IMAGES.triton,
        metavar="IMAGE",
        help="image of Triton Inference Server, for InferenceServices of engine triton that "
        f"name no image (default: {DEFAULT_IMAGES.triton})",
    )
    parser.add_argument(
        "--router-image",
        type=_image,
        default=DEFAULT_IMAGES.router,
        metavar="IMAGE",
        help="image of Sluice's router (Envoy and its control plane), put in front of "
        f"InferenceServices that split traffic (default: {DEFAULT_IMAGES.router})",
    )
    parser.add_argument(
        "--log-format", choices=["json", "plain", "full"], default="json", help="log line format"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
        parser.error("need 0 < --retry-period < --renew-deadline < --lease-duration")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sluice-operator`` console script."""
    args = parse_args(argv)
    configure_logging(verbose=args.verbose, log_format=args.log_format)
    try:
        options = Options(
            namespaces=tuple(dict.fromkeys(args.namespace)),
            config_source=resolve_config(args.kubeconfig, os.environ, home=Path.home()),
            identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            liveness_host=args.liveness_host,
            liveness_port=args.liveness_port,
            leader_election=args.leader_election,
            lease_namespace=args.lease_namespace,
            lease_name=args.lease_name,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
            resync_seconds=args.resync_seconds,
            images=Images(
                runtime=args.runtime_image, triton=args.triton_image, router=args.router_image
            ),
        )
        return asyncio.run(run(options))
    except StartupError as exc:
        print(f"sluice-operator: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
