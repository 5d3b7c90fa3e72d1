"""An InferenceService serves real answers through its Service: over HTTP with binary and
JSON tensors and over gRPC, equal to onnxruntime's for the same model file, whether the
model comes over HTTP from a model server or from a PersistentVolumeClaim.
"""

from __future__ import annotations

import json

import numpy as np
from kubernetes import client

from e2e import inference
from e2e.cluster import images, model_store, real_node, storage
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for
from e2e.system.conftest import batch, model_file, model_uri, serve
from tests.integration.support import Isvcs


def assert_serves(address_http: str, address_grpc: str, want: np.ndarray) -> None:
    clients = (
        inference.HttpModel(address_http, model_store.SAMPLE, binary=True),
        inference.HttpModel(address_http, model_store.SAMPLE, binary=False),
        inference.GrpcModel(address_grpc, model_store.SAMPLE),
    )
    for model in clients:
        try:
            np.testing.assert_allclose(model.infer(batch()), want, rtol=1e-5, atol=1e-6)
        finally:
            model.close()


def test_model_over_http_is_served_on_a_gpu_of_the_real_node(sluice: Cluster, isvcs: Isvcs) -> None:
    served = serve(isvcs, "over-http", model_uri(sluice, 1), gpus=1)
    assert_serves(served.http, served.grpc, inference.expected(model_file(sluice, 1), batch()))

    pods = isvcs.core.list_namespaced_pod(isvcs.namespace).items
    assert [pod.spec.node_name for pod in pods] == [real_node.NODE_NAME]
    limits = pods[0].spec.containers[0].resources.limits
    assert limits["nvidia.com/gpu"] == "1"
    # The fake GPU is no CUDA device: onnxruntime fell back to the CPU, and status says so.
    wait_for(
        lambda: isvcs.get("over-http")["status"].get("provider") == "CPUExecutionProvider",
        timeout=60,
        what="status.provider",
    )


def test_status_url_answers_inside_the_cluster(sluice: Cluster, isvcs: Isvcs) -> None:
    """A pod resolves ``status.url`` through the cluster DNS and reaches the Service."""
    serve(isvcs, "by-name", model_uri(sluice, 1))
    url = isvcs.get("by-name")["status"]["url"]
    assert url == f"http://by-name.{isvcs.namespace}.svc.cluster.local"
    check = (
        "import urllib.request; "
        f"print(urllib.request.urlopen('{url}/v2/models/{model_store.SAMPLE}', timeout=10)"
        ".read().decode())"
    )
    isvcs.core.create_namespaced_pod(
        isvcs.namespace,
        {
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "client",
                        "image": images.ensure(lambda message: None).runtime.reference,
                        "command": ["python3", "-c", check],
                    }
                ],
            },
        },
    )

    def finished() -> str | None:
        phase = isvcs.core.read_namespaced_pod("client", isvcs.namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, timeout=120, what="the client pod to finish")
    log = isvcs.core.read_namespaced_pod_log("client", isvcs.namespace)
    assert phase == "Succeeded", log
    assert json.loads(log)["name"] == model_store.SAMPLE


def test_model_from_a_claim_is_served(sluice: Cluster, isvcs: Isvcs, api: client.ApiClient) -> None:
    storage.provide_claim(api, isvcs.namespace, "models", model_store.folder(sluice.workdir))
    served = serve(isvcs, "from-claim", f"pvc://models/{model_store.sample_path(2)}")
    assert_serves(served.http, served.grpc, inference.expected(model_file(sluice, 2), batch()))
