"""``--namespace`` mode: an operator serving one namespace reconciles there and never
touches an InferenceService in another one.

No all-namespace operator runs in this module (the ``operator`` fixture is not used), so
anything that happens to the InferenceServices here is this operator's doing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster.fixtures import fresh_namespace
from e2e.cluster.waiting import wait_for

from .conftest import start_operator
from .support import Isvcs, isvc_body

pytestmark = pytest.mark.cluster


@pytest.fixture
def other_namespace(api: client.ApiClient) -> Iterator[str]:
    """A second fresh namespace, which the operator under test does not serve."""
    with fresh_namespace(api) as name:
        yield name


def test_one_namespace_is_served_and_another_ignored(
    operator_kubeconfig: Path,
    api: client.ApiClient,
    namespace: str,
    other_namespace: str,
    tmp_path: Path,
) -> None:
    served, ignored = Isvcs(api, namespace), Isvcs(api, other_namespace)
    handle = start_operator(
        operator_kubeconfig, tmp_path / "operator.log", "--namespace", namespace
    )
    try:
        wait_for(lambda: "became leader" in handle.log_text(), what="the operator to lead")
        # Created first: had the operator watched this namespace, it would meet it first.
        ignored.create(isvc_body("elsewhere", gpus=1))
        served.create(isvc_body("here", gpus=1))
        served.wait_condition("here", "Ready", "True")
        # Several resyncs (every RESYNC_SECONDS) pass while the served one becomes Ready.
        log = handle.log_text()
    finally:
        assert handle.stop() == 0

    deployments, services = served.children("here")
    assert [d.metadata.name for d in deployments] == ["here-predictor"]
    assert [s.metadata.name for s in services] == ["here"]

    untouched = ignored.get("elsewhere")
    assert "status" not in untouched
    assert not [key for key in untouched["metadata"].get("annotations", {}) if "kopf" in key]
    assert ignored.children("elsewhere") == ([], [])
    assert ignored.events_for("elsewhere") == []
    # kopf's per-event success lines are at debug level, so not in this (info) log.
    assert not re.search(r"Handler '[^']*' succeeded", log)
