"""Changes under continuous traffic lose no request: a model change rolls the pods, and a
scale-down stops pods (the kubelet's real SIGTERM, the runtime's drain) while clients keep
sending through the Service over HTTP and gRPC."""

from __future__ import annotations

import pytest
from sluice.contracts.labels import LABEL_INFERENCESERVICE as LABEL

from e2e import inference
from e2e.cluster import model_store
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for
from e2e.load import Load
from e2e.system.conftest import batch, classifier, model_uri, serve
from tests.integration.support import Isvcs


def loads(cluster: Cluster, http: str, grpc: str) -> tuple[Load, Load]:
    classify = classifier(cluster)
    return (
        Load(lambda: inference.HttpModel(http, model_store.SAMPLE), batch(), classify),
        Load(lambda: inference.GrpcModel(grpc, model_store.SAMPLE), batch(), classify),
    )


def assert_no_request_lost(http: Load, grpc: Load) -> None:
    """No HTTP request failed, and no gRPC call but those the server's shutdown race cancels.

    That race is a known gap: a call that reaches a stopping runtime after it sent GOAWAY but
    before the client read it is cancelled by grpc's server shutdown (which clients do not
    retry) rather than refused (which they retry on another connection). It is rare (one call
    in thousands); the test reports it as an expected failure, and fails on any other loss.
    """
    assert http.report.failures == [], http.report
    cancelled = [f for f in grpc.report.failures if "CANCELLED" in f]
    assert [f for f in grpc.report.failures if f not in cancelled] == [], grpc.report
    if cancelled:
        pytest.xfail(f"{len(cancelled)} gRPC call(s) cancelled by the shutdown race: {grpc.report}")


def running_pods(isvcs: Isvcs, name: str) -> list[str]:
    pods = isvcs.core.list_namespaced_pod(isvcs.namespace, label_selector=f"{LABEL}={name}")
    return [p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None]


def test_model_change_rolls_the_pods_with_no_failed_request(sluice: Cluster, isvcs: Isvcs) -> None:
    served = serve(isvcs, "rolled", model_uri(sluice, 1), replicas=2)
    before = set(running_pods(isvcs, "rolled"))
    http, grpc = loads(sluice, served.http, served.grpc)
    with http, grpc:
        http.wait_answers(20)
        grpc.wait_answers(20)
        isvcs.patch_spec("rolled", {"model": {"uri": model_uri(sluice, 2)}})
        isvcs.wait_condition("rolled", "Ready", "True", timeout=240)

        def only_new_pods() -> bool:
            pods = set(running_pods(isvcs, "rolled"))
            return len(pods) == 2 and not pods & before

        wait_for(only_new_pods, timeout=120, what="the old pods to be deleted")
        # Clients keep their connections to an old pod while it finishes (its preStop
        # pause, then its drain closes them): they move to the new version when it has.
        http.wait_answers(20, "v2")
        grpc.wait_answers(20, "v2")
    for load in (http, grpc):
        assert set(load.report.answers) == {"v1", "v2"}, load.report
    assert_no_request_lost(http, grpc)


def test_scale_down_under_load_loses_no_request(sluice: Cluster, isvcs: Isvcs) -> None:
    served = serve(isvcs, "scaled", model_uri(sluice, 1), replicas=3)
    http, grpc = loads(sluice, served.http, served.grpc)
    with http, grpc:
        http.wait_answers(20)
        grpc.wait_answers(20)
        isvcs.patch_spec("scaled", {"replicas": 1})
        wait_for(
            lambda: len(running_pods(isvcs, "scaled")) == 1,
            timeout=120,
            what="one pod left",
        )

        def all_gone() -> bool:
            listed = isvcs.core.list_namespaced_pod(
                isvcs.namespace, label_selector=f"{LABEL}=scaled"
            ).items
            return len(listed) == 1

        wait_for(all_gone, timeout=120, what="the stopped pods to be removed")
        http.wait_answers(20)
        grpc.wait_answers(20)
    for load in (http, grpc):
        assert set(load.report.answers) == {"v1"}, load.report
    assert_no_request_lost(http, grpc)
