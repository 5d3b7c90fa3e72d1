"""Command line: ``python -m e2e.cluster build | up | down | images``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from e2e.cluster import binaries, control_plane, images, nodes, real_node

DEFAULT_WORKDIR = Path(".work/cluster")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(
        prog="python -m e2e.cluster",
        description="A real local Kubernetes control plane with fake GPU nodes and real nodes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="find or build the pinned binaries; print their folder")
    up = commands.add_parser("up", help="start the cluster (or find it running)")
    down = commands.add_parser("down", help="stop every process that up started")
    build_images = commands.add_parser(
        "images",
        help="build the runtime and operator images; print Helm flags for them as the last line",
    )
    build_images.add_argument(
        "--containerd",
        metavar="ADDRESS",
        help="also import the images into the containerd at this socket (namespace k8s.io)",
    )
    for command in (up, down):
        command.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    up.add_argument("--gpu-nodes", type=int, default=3, help="fake GPU nodes (default 3)")
    up.add_argument(
        "--real-nodes",
        type=int,
        default=1,
        choices=(0, 1),
        help="real worker nodes whose pods really run: 0 or 1 (default 1)",
    )
    up.add_argument(
        "--real-node-gpus",
        type=int,
        default=real_node.DEFAULT_GPUS,
        help="nvidia.com/gpu the real node's device plugin advertises"
        f" (default {real_node.DEFAULT_GPUS})",
    )
    up.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per kwok node (default 8)")
    up.add_argument(
        "--gpu-products",
        default=",".join(nodes.DEFAULT_PRODUCTS),
        help="comma-separated nvidia.com/gpu.product values, alternating across nodes",
    )
    args = parser.parse_args(argv)

    if args.command == "build":
        print(binaries.ensure(_log))
    elif args.command == "up":
        if args.gpu_nodes < 0 or args.gpus_per_node < 0 or args.real_node_gpus < 0:
            parser.error("--gpu-nodes, --gpus-per-node and --real-node-gpus must be >= 0")
        products = tuple(p for p in args.gpu_products.split(",") if p)
        if not products:
            parser.error("--gpu-products needs at least one product")
        cluster = control_plane.up(
            args.workdir,
            gpu_nodes=args.gpu_nodes,
            gpus_per_node=args.gpus_per_node,
            gpu_products=products,
            real_nodes=args.real_nodes,
            real_node_gpus=args.real_node_gpus,
            log=_log,
        )
        print(f"export PATH={cluster.bin_dir}:$PATH")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "images":
        built = images.ensure(_log)
        if args.containerd:
            images.load(built, args.containerd, _log)
        print(images.helm_flags(built))
    else:
        stopped = control_plane.down(args.workdir)
        _log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
