"""Leader election: a second operator replica stands by while the first holds the Lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster.waiting import wait_for

from .conftest import OperatorProcess, leader, start_operator, stop_operator
from .support import Isvcs, isvc_body

pytestmark = pytest.mark.cluster


def test_second_replica_stands_by(
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    api: client.ApiClient,
    tmp_path: Path,
) -> None:
    holder = leader(api)
    assert holder
    standby = start_operator(operator_kubeconfig, tmp_path / "standby.log", "--all-namespaces")
    try:
        time.sleep(6)  # three retry periods
        assert standby.alive()
        assert standby.healthy()
        assert leader(api) == holder
        log = standby.log_text()
        assert "waiting for leadership" in log
        assert "became leader" not in log
    finally:
        assert stop_operator(standby) == 0
    assert leader(api) == holder


def test_standby_takes_over_when_the_leader_stops(
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    api: client.ApiClient,
    isvcs: Isvcs,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    holder = leader(api)
    log = tmp_path_factory.mktemp("operator-log") / "successor.log"
    successor = start_operator(operator_kubeconfig, log, "--all-namespaces")
    time.sleep(4)
    assert leader(api) == holder

    # A clean stop hands the Lease back, so the standby need not wait for it to expire.
    assert stop_operator(operator) == 0
    new_holder = wait_for(
        lambda: (leader(api) or "") not in ("", holder) and leader(api),
        what="the standby to take the Lease",
        timeout=10,
    )
    assert "became leader" in successor.log_text()
    isvcs.create(isvc_body("after-failover", gpus=1))
    isvcs.wait_condition("after-failover", "Ready", "True")
    assert leader(api) == new_holder

    # The successor now serves the rest of the session in the stopped operator's place.
    operator.process, operator.log, operator.health_url = (
        successor.process,
        successor.log,
        successor.health_url,
    )
