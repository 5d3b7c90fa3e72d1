"""Run Sluice's main job on the local cluster: ``python -m e2e.demo`` (``make demo``).

Starts the local control plane with fake GPU nodes and shows what the scheduler sees.
The cluster keeps running afterwards; ``make down`` stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from e2e.cluster import control_plane
from e2e.cluster.client import Cluster

GPU_COLUMNS = (
    "NAME:.metadata.name,"
    "GPU:.metadata.labels.nvidia\\.com/gpu\\.product,"
    "ALLOCATABLE:.status.allocatable.nvidia\\.com/gpu,"
    "READY:.status.conditions[?(@.type=='Ready')].status"
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show(cluster: Cluster, title: str, *args: str) -> None:
    print(f"\n$ kubectl {title}")
    print(cluster.kubectl(*args).stdout.rstrip())


def main(argv: list[str] | None = None) -> int:
    """Bring the cluster up and show its GPU nodes."""
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".work/cluster"))
    parser.add_argument("--gpu-nodes", type=int, default=3)
    args = parser.parse_args(argv)

    cluster = control_plane.up(args.workdir, gpu_nodes=args.gpu_nodes, log=_log)
    _show(cluster, "get nodes -o wide", "get", "nodes", "-o", "wide")
    _show(cluster, "get nodes (GPUs)", "get", "nodes", "-o", f"custom-columns={GPU_COLUMNS}")
    print(f"\nexport PATH={cluster.bin_dir}:$PATH")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
