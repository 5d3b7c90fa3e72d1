"""Run Sluice's main job on the local cluster: ``python -m e2e.demo`` (``make demo``).

Starts the local control plane with fake GPU nodes, installs the CRD with
``kubectl apply -f crds/`` and the operator's RBAC from ``manifests/operator/``, runs the
operator as its ServiceAccount, applies ``manifests/samples/``, waits until every
InferenceService is Ready and shows them with the pods on their GPU nodes. Everything keeps
running afterwards (the operator is recorded with the cluster's processes); ``make down``
stops it all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml
from sluice.contracts.labels import LABEL_INFERENCESERVICE

from e2e.cluster import control_plane, storage
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry
from e2e.cluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "manifests" / "samples"
GPU_COLUMNS = (
    "NAME:.metadata.name,"
    "GPU:.metadata.labels.nvidia\\.com/gpu\\.product,"
    "ALLOCATABLE:.status.allocatable.nvidia\\.com/gpu,"
    "READY:.status.conditions[?(@.type=='Ready')].status"
)
POD_COLUMNS = (
    "NAME:.metadata.name,"
    "STATUS:.status.phase,"
    "NODE:.spec.nodeName,"
    "GPUS:.spec.containers[0].resources.limits.nvidia\\.com/gpu"
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show(cluster: Cluster, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}")
    print(cluster.kubectl(*args).stdout.rstrip())


def start_operator(cluster: Cluster) -> None:
    """Run the operator as its ServiceAccount, recorded with the cluster's processes so
    that ``make down`` stops it, unless it already runs for this cluster; wait until it
    leads."""
    registry = Registry(cluster.workdir)
    if any(p.name == "sluice-operator" and p.alive() for p in registry.load()):
        _log("sluice-operator already running")
        return
    config = sluice_operator.kubeconfig(cluster, cluster.workdir / "operator.kubeconfig")
    registry.start("sluice-operator", sluice_operator.command(config, "--all-namespaces"))
    with cluster.api_client() as api:
        holder = sluice_operator.wait_leading(api)
    _log(f"sluice-operator leads as {holder}; log in {registry.logs / 'sluice-operator.log'}")


def provide_model_stores(cluster: Cluster) -> None:
    """Give each sample that reads its model from a claim (pvc://CLAIM/...) that claim."""
    with cluster.api_client() as api:
        for path in sorted(SAMPLES.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                uri = (doc or {}).get("spec", {}).get("model", {}).get("uri", "")
                if uri.startswith("pvc://"):
                    namespace = doc["metadata"].get("namespace", "default")
                    storage.provide_claim(api, namespace, uri.removeprefix("pvc://").split("/")[0])


def wait_ready(cluster: Cluster, timeout: float) -> list[str]:
    """Wait until every InferenceService in the cluster reports Ready=True."""

    def all_ready() -> list[str] | None:
        items = json.loads(cluster.kubectl("get", "infsvc", "-A", "-o", "json").stdout)["items"]
        ready = [
            item["metadata"]["name"]
            for item in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
        ]
        return ready if items and len(ready) == len(items) else None

    return wait_for(all_ready, timeout=timeout, what="every InferenceService to be Ready")


def main(argv: list[str] | None = None) -> int:
    """Bring the cluster up, run the operator on the samples, and show the result."""
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".work/cluster"))
    parser.add_argument("--gpu-nodes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for Ready")
    args = parser.parse_args(argv)

    started = time.monotonic()
    cluster = control_plane.up(args.workdir, gpu_nodes=args.gpu_nodes, log=_log)
    _show(cluster, "get", "nodes", "-o", f"custom-columns={GPU_COLUMNS}")
    sluice_operator.install(cluster)
    start_operator(cluster)
    provide_model_stores(cluster)
    cluster.kubectl("apply", "-f", str(SAMPLES))
    ready = wait_ready(cluster, args.timeout)
    _log(f"{len(ready)} InferenceServices Ready in {time.monotonic() - started:.0f}s")
    _show(cluster, "get", "infsvc", "-A")
    _show(cluster, "get", "pods", "-A", "-l", LABEL_INFERENCESERVICE,
          "-o", f"custom-columns={POD_COLUMNS}")  # fmt: skip
    print(f"\nexport PATH={cluster.bin_dir}:$PATH")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
