"""Leader election: a second operator replica stands by while the first holds the Lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from .conftest import OperatorProcess, leader, start_operator, stop_operator

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
