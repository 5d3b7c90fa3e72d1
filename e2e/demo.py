"""Run Sluice's main job on the local cluster: ``python -m e2e.demo`` (``make demo``).

Starts the local cluster with its real node (building what is missing), builds Sluice's
images from the project's Dockerfiles and loads them into the node, installs Sluice with its
Helm chart, applies an InferenceService serving a real ONNX model from the cluster's model
server, waits for it with its progress, and sends inference requests with tritonclient over
HTTP and gRPC through the InferenceService's Service: it prints the answers, the latency and
``kubectl get infsvc``. Everything keeps running afterwards; ``make down`` stops it all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes import client
from sluice.contracts import ports
from sluice.contracts.api import GROUP, PLURAL, VERSION
from sluice.contracts.labels import LABEL_INFERENCESERVICE

from e2e import inference
from e2e.cluster import control_plane, model_store, release
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

DEFAULT_WORKDIR = Path(".work/cluster")  # the Makefile's WORKDIR
NAME = "mlp"
NAMESPACE = "default"
REQUESTS = 50  # per protocol, for the latency figures


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show(cluster: Cluster, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    print(cluster.kubectl(*args).stdout.rstrip(), flush=True)


def sample(cluster: Cluster) -> dict[str, Any]:
    """The demo's InferenceService: the sample model over HTTP from the model server, on one
    GPU of the real node."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "model": {
                "uri": f"{cluster.models_url}/{model_store.sample_path()}",
                "name": model_store.SAMPLE,
            },
            "resources": {"gpus": 1},
            "replicas": 1,
        },
    }


def _progress(api: client.ApiClient) -> str:
    """One line: the InferenceService's Ready condition and each of its pods' state."""
    isvc = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, NAME
    )
    ready = next(
        (c for c in isvc.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None
    )
    parts = [f"Ready={ready['status']} ({ready.get('reason', '')})" if ready else "no status yet"]
    pods = client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"{LABEL_INFERENCESERVICE}={NAME}"
    )
    for pod in pods.items:
        parts.append(f"pod {pod.metadata.name[-5:]}: {_pod_state(pod)}")
    return ", ".join(parts)


def _pod_state(pod: client.V1Pod) -> str:
    statuses = (pod.status.init_container_statuses or []) + (pod.status.container_statuses or [])
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason:
            return f"{status.name} {waiting.reason}"
        if status.state and status.state.running and not status.ready:
            return f"{status.name} starting"
    return str(pod.status.phase)


def wait_ready(api: client.ApiClient, timeout: float) -> None:
    """Wait until the InferenceService is Ready, printing each change with its time."""
    started = time.monotonic()
    last = ""

    def ready() -> bool:
        nonlocal last
        line = _progress(api)
        if line != last:
            _log(f"  {time.monotonic() - started:5.1f}s  {line}")
            last = line
        return line.startswith("Ready=True")

    wait_for(ready, timeout=timeout, interval=0.5, what=f"InferenceService {NAME} Ready")


def _timed(call: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    answer = call(batch)
    return answer, (time.perf_counter() - began) * 1000


def ask(cluster_ip: str, batch: np.ndarray) -> None:
    """Send the batch over HTTP and gRPC through the Service; print answers and latencies."""
    clients: list[tuple[str, inference.HttpModel | inference.GrpcModel]] = [
        (
            f"HTTP  {cluster_ip}:{ports.SERVICE_HTTP_PORT}",
            inference.HttpModel(f"{cluster_ip}:{ports.SERVICE_HTTP_PORT}", model_store.SAMPLE),
        ),
        (
            f"gRPC  {cluster_ip}:{ports.SERVICE_GRPC_PORT}",
            inference.GrpcModel(f"{cluster_ip}:{ports.SERVICE_GRPC_PORT}", model_store.SAMPLE),
        ),
    ]
    for label, model in clients:
        try:
            answer, first = _timed(model.infer, batch)
            times = [_timed(model.infer, batch)[1] for _ in range(REQUESTS)]
        finally:
            model.close()
        print(f"\n{label}  first answer in {first:.1f} ms", flush=True)
        for row, scores in enumerate(answer):
            print(f"  row {row}: scores {np.array2string(scores, precision=3)}")
        print(
            f"  {REQUESTS} more requests: median {statistics.median(times):.2f} ms,"
            f" max {max(times):.2f} ms",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Bring everything up, serve the sample model, and ask it."""
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for Ready")
    args = parser.parse_args(argv)

    started = time.monotonic()
    _log("starting the local cluster (the first run builds Kubernetes from its Go modules)")
    cluster = control_plane.up(args.workdir, gpu_nodes=0, real_nodes=1, log=_log)
    _log("building Sluice's images (cached after the first run)")
    flags = release.image_flags(cluster, _log)
    _log(f"$ helm upgrade --install sluice helm/sluice -n sluice-system {' '.join(flags)}")
    release.install(cluster, flags)
    with cluster.api_client() as api:
        _log(f"sluice-operator leads as {sluice_operator.wait_leading(api)}")
        cluster.kubectl("apply", "-f", "-", input=json.dumps(sample(cluster)))
        _log(f"applied InferenceService {NAME}; waiting for it to be Ready")
        wait_ready(api, args.timeout)
        service = client.CoreV1Api(api).read_namespaced_service(NAME, NAMESPACE)
    _log(f"ready {time.monotonic() - started:.0f}s after the start")
    ask(service.spec.cluster_ip, inference.sample_input(2, model_store.SAMPLE_SIZES[0]))
    _show(cluster, "get", "infsvc", "-n", NAMESPACE)
    _show(cluster, "get", "pods", "-A", "-o", "wide")
    ip = service.spec.cluster_ip
    down = "make down" if args.workdir == DEFAULT_WORKDIR else f"make down WORKDIR={args.workdir}"
    features = ", ".join(["0.5"] * model_store.SAMPLE_SIZES[0])
    body = (
        f'{{"inputs": [{{"name": "{inference.INPUT}", "datatype": "FP32",'
        f' "shape": [1, {model_store.SAMPLE_SIZES[0]}], "data": [{features}]}}]}}'
    )
    print(
        f"""
Send a request yourself:
  curl -s http://{ip}/v2/models/{model_store.SAMPLE}
  curl -s http://{ip}/v2/models/{model_store.SAMPLE}/infer -H 'Content-Type: application/json' \\
    -d '{body}'
Use kubectl on this cluster:
  export PATH={cluster.bin_dir}:$PATH KUBECONFIG={cluster.kubeconfig}
Stop the cluster (every process, pod and network it made):
  {down}""",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
