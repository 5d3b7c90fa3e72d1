"""The operator as Helm runs it: two pods, one leading. The leader killed, the other takes
over and reconciles the next change; ``helm upgrade`` rolls the operator while an
InferenceService keeps serving every request; deleting an InferenceService removes its pods
and gives their GPUs back."""

from __future__ import annotations

from kubernetes import client
from sluice.contracts.labels import LABEL_INFERENCESERVICE

from e2e import inference
from e2e.cluster import model_store, nodes, real_node, release
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for
from e2e.system.conftest import batch, leading_pod, model_uri, operator_pods, serve
from e2e.system.test_traffic import assert_no_request_lost, loads
from tests.cluster.realpods import run_pod
from tests.integration.support import Isvcs

GPUS = 2  # of the real node's 4, leaving room for another test's leftovers


def test_operator_runs_as_two_pods_on_the_real_node(sluice: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pods = operator_pods(api)
    assert len(pods) == 2
    nodes = {core.read_namespaced_pod(p, sluice_operator.NAMESPACE).spec.node_name for p in pods}
    assert nodes == {real_node.NODE_NAME}
    assert leading_pod(api) in pods


def test_leader_killed_the_other_pod_takes_over(
    sluice: Cluster, api: client.ApiClient, isvcs: Isvcs
) -> None:
    old = leading_pod(api)
    client.CoreV1Api(api).delete_namespaced_pod(
        old, sluice_operator.NAMESPACE, grace_period_seconds=0
    )
    assert leading_pod(api) != old
    serve(isvcs, "after-takeover", model_uri(sluice, 1))


def test_helm_upgrade_of_the_operator_under_load_loses_no_request(
    sluice: Cluster, api: client.ApiClient, isvcs: Isvcs
) -> None:
    served = serve(isvcs, "steady", model_uri(sluice, 1), replicas=2)
    before = set(operator_pods(api))
    http, grpc = loads(sluice, served.http, served.grpc)
    with http, grpc:
        http.wait_answers(20)
        flags = release.image_flags(sluice, lambda message: None)
        release.install(sluice, flags, "--set", "logFormat=plain")
        assert not before & set(operator_pods(api))
        leading_pod(api)
        isvcs.patch_spec("steady", {"replicas": 1})
        wait_for(
            lambda: isvcs.get("steady").get("status", {}).get("replicas") == 1,
            timeout=120,
            what="the new operator to reconcile the next change",
        )
        http.wait_answers(20)
        grpc.wait_answers(20)
    release.install(sluice, flags)  # back to the session's values
    assert_no_request_lost(http, grpc)


def gpus_in_use(core: client.CoreV1Api) -> int:
    """GPUs the real node's pods hold, once none of them is still stopping."""

    def settled() -> list[client.V1Pod] | None:
        selector = f"spec.nodeName={real_node.NODE_NAME}"
        pods = core.list_pod_for_all_namespaces(field_selector=selector).items
        return None if any(p.metadata.deletion_timestamp for p in pods) else pods

    pods = wait_for(settled, timeout=120, what="no pod stopping on the real node")
    return sum(
        int((c.resources.limits or {}).get(nodes.GPU_RESOURCE, 0))
        for pod in pods
        if pod.status.phase not in ("Succeeded", "Failed")
        for c in pod.spec.containers
    )


def test_deleting_an_inference_service_removes_its_pods_and_frees_its_gpus(
    sluice: Cluster, api: client.ApiClient, isvcs: Isvcs
) -> None:
    core = client.CoreV1Api(api)
    before = gpus_in_use(core)
    serve(isvcs, "gpu-holder", model_uri(sluice, 1), gpus=GPUS, replicas=1)
    assert gpus_in_use(core) == before + GPUS
    isvcs.delete("gpu-holder")

    def no_pods() -> bool:
        selector = f"{LABEL_INFERENCESERVICE}=gpu-holder"
        return not core.list_namespaced_pod(isvcs.namespace, label_selector=selector).items

    wait_for(no_pods, timeout=120, what="the InferenceService's pods to be gone")
    assert gpus_in_use(core) == before
    # The scheduler gives them out again: a pod asking for as many runs.
    pod = run_pod(core, "gpus-again", namespace=isvcs.namespace, gpus=GPUS)
    assert pod.spec.node_name == real_node.NODE_NAME


def test_uninstall_keeps_every_model_serving_and_install_takes_them_up_again(
    sluice: Cluster, api: client.ApiClient, isvcs: Isvcs
) -> None:
    """The chart's CRD is kept on uninstall, and with it the InferenceServices and their
    pods, which go on answering; installed again, the operator reconciles them."""
    served = serve(isvcs, "kept", model_uri(sluice, 1))
    release.uninstall(sluice)
    wait_for(lambda: not operator_pods(api), timeout=120, what="the operator pods to be gone")
    model = inference.HttpModel(served.http, model_store.SAMPLE)
    try:
        assert model.infer(batch()).shape == (2, model_store.SAMPLE_SIZES[-1])
    finally:
        model.close()
    assert isvcs.get("kept")["status"]["replicas"] == 1

    release.install(sluice, release.image_flags(sluice, lambda message: None))
    leading_pod(api)
    isvcs.patch_spec("kept", {"replicas": 2})
    wait_for(
        lambda: isvcs.get("kept").get("status", {}).get("readyReplicas") == 2,
        timeout=180,
        what="the reinstalled operator to scale the kept InferenceService",
    )
