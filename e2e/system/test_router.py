"""The router on real pods: an InferenceService with an A/B variant (weighted and matched by a
header), a shadow variant that sees a mirror of the traffic, and a sticky split, reached by
real clients through its stable Service over HTTP and gRPC."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from kubernetes import client
from sluice.contracts import ports
from sluice.contracts.labels import LABEL_COMPONENT
from sluice.contracts.labels import LABEL_INFERENCESERVICE as LABEL

from e2e import inference
from e2e.cluster import model_store
from e2e.cluster.client import Cluster
from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.waiting import wait_for
from e2e.load import Load
from e2e.split import DIRECT, GrpcAsker, ask_http, split
from e2e.system.conftest import Served, batch, classifier, model_uri, serve
from tests.integration.support import Isvcs

NAME = "ab"
MODEL = model_store.SAMPLE


def ab_spec(cluster: Cluster) -> dict[str, object]:
    """The main model at v1; variant b at v2 with 30 % and every x-cohort: beta request;
    variant shadow at v2 with no weight, sent a mirror of every unmatched request."""
    return {
        "variants": [
            {
                "name": "b",
                "weight": 30,
                "model": {"uri": model_uri(cluster, 2)},
                "match": [{"header": {"name": "x-cohort", "value": "beta"}}],
            },
            {"name": "shadow", "weight": 0, "model": {"uri": model_uri(cluster, 2)}},
        ],
        "traffic": {"stickyBy": {"header": "x-user-id"}, "mirror": {"variant": "shadow"}},
    }


@pytest.fixture(scope="module")
def ab(sluice: Cluster, api: client.ApiClient) -> Iterator[tuple[Isvcs, Served]]:
    with fresh_namespace(api, fake_nodes=False) as namespace:
        isvcs = Isvcs(api, namespace)
        served = serve(isvcs, NAME, model_uri(sluice, 1), spec=ab_spec(sluice))
        yield isvcs, served


def test_the_stable_service_now_selects_the_router(ab: tuple[Isvcs, Served]) -> None:
    isvcs, _ = ab
    selector = isvcs.core.read_namespaced_service(NAME, isvcs.namespace).spec.selector
    assert selector[LABEL_COMPONENT] == "router"
    services = {s.metadata.name for s in isvcs.core.list_namespaced_service(isvcs.namespace).items}
    assert {f"{NAME}-predictor", f"{NAME}-b", f"{NAME}-shadow"} <= services


def test_a_weighted_split_within_statistical_bounds(
    sluice: Cluster, ab: tuple[Isvcs, Served]
) -> None:
    _, served = ab
    classify = classifier(sluice)
    count, share = 300, 0.3
    seen: Counter[str] = Counter()
    for _ in range(count):
        variant, answer = ask_http(served.http, MODEL, batch())
        # Each variant answers with its own model version.
        assert classify(answer) == {"main": "v1", "b": "v2"}[variant]
        seen[variant] += 1
    assert set(seen) == {"main", "b"}, seen
    bound = 4 * math.sqrt(count * share * (1 - share))
    assert abs(seen["b"] - count * share) <= bound, seen


def test_a_matching_header_always_reaches_its_variant(ab: tuple[Isvcs, Served]) -> None:
    _, served = ab
    seen = {ask_http(served.http, MODEL, batch(), {"x-cohort": "beta"})[0] for _ in range(30)}
    assert seen == {"b"}
    grpc = GrpcAsker(served.grpc, MODEL)
    try:
        assert {grpc.ask(batch(), {"x-cohort": "beta"})[0] for _ in range(10)} == {"b"}
    finally:
        grpc.close()


def test_the_same_user_always_lands_on_the_same_variant(ab: tuple[Isvcs, Served]) -> None:
    _, served = ab
    landed: dict[str, set[str]] = {}
    for user in range(30):
        for _ in range(4):
            variant, _answer = ask_http(served.http, MODEL, batch(), {"x-user-id": f"u{user}"})
            landed.setdefault(f"u{user}", set()).add(variant)
    assert all(len(variants) == 1 for variants in landed.values()), landed
    assert set().union(*landed.values()) == {"main", "b"}, landed


def test_grpc_goes_through_the_router_and_names_the_variant(
    sluice: Cluster, ab: tuple[Isvcs, Served]
) -> None:
    _, served = ab
    classify = classifier(sluice)
    grpc = GrpcAsker(served.grpc, MODEL)
    try:
        seen: Counter[str] = Counter()
        for _ in range(60):
            variant, answer = grpc.ask(batch())
            assert classify(answer) == {"main": "v1", "b": "v2"}[variant]
            seen[variant] += 1
    finally:
        grpc.close()
    assert set(seen) == {"main", "b"}, seen


def shadow_requests(isvcs: Isvcs) -> float:
    """Requests the shadow variant's pod has answered, from its own metrics."""
    pods = isvcs.core.list_namespaced_pod(
        isvcs.namespace, label_selector=f"{LABEL}={NAME},{LABEL_COMPONENT}=shadow"
    ).items
    total = 0.0
    for pod in pods:
        url = f"http://{pod.status.pod_ip}:{ports.HTTP_PORT}{ports.METRICS_PATH}"
        with DIRECT.open(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("sluice_requests_total{") and 'code="200"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_shadow_sees_a_mirror_and_never_answers(ab: tuple[Isvcs, Served]) -> None:
    isvcs, served = ab
    before = shadow_requests(isvcs)
    sent = 40
    variants = {ask_http(served.http, MODEL, batch())[0] for _ in range(sent)}
    assert "shadow" not in variants
    wait_for(
        lambda: shadow_requests(isvcs) - before >= sent,
        timeout=30,
        what=f"the shadow to answer the {sent} mirrored requests",
    )


def test_a_weight_change_under_load_loses_no_request(
    sluice: Cluster, ab: tuple[Isvcs, Served]
) -> None:
    isvcs, served = ab
    classify = classifier(sluice)
    http = Load(lambda: inference.HttpModel(served.http, MODEL), batch(), classify)
    grpc = Load(lambda: inference.GrpcModel(served.grpc, MODEL), batch(), classify)
    spec = ab_spec(sluice)
    spec["variants"][0]["weight"] = 90  # type: ignore[index]
    with http, grpc:
        http.wait_answers(20)
        grpc.wait_answers(20)
        changed = time.monotonic()
        isvcs.patch_spec(NAME, {"variants": spec["variants"]})

        def mostly_b() -> bool:
            return split(served.http, MODEL, batch(), 40)["b"] >= 30

        wait_for(mostly_b, timeout=30, what="the new split (90 % to b)")
        took = time.monotonic() - changed
        http.wait_answers(20)
        grpc.wait_answers(20)
    assert http.report.failures == [], http.report
    assert grpc.report.failures == [], grpc.report
    print(f"new split in effect {took:.2f}s after the patch")
