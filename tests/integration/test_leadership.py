"""Leader election: one replica acts while another stands by, and the standby takes over
when the leader stops cleanly (at once) or crashes (once the Lease has expired)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.waiting import wait_for

from .conftest import OperatorProcess, start_operator
from .support import Isvcs, isvc_body

pytestmark = pytest.mark.cluster


def test_second_replica_stands_by(
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    api: client.ApiClient,
    tmp_path: Path,
) -> None:
    holder = sluice_operator.leader(api)
    assert holder
    standby = start_operator(operator_kubeconfig, tmp_path / "standby.log", "--all-namespaces")
    try:
        wait_for(lambda: "waiting for leadership" in standby.log_text(), what="the standby to wait")
        time.sleep(6)  # three retry periods, in which the standby must not take the Lease
        assert standby.alive()
        assert standby.healthy()
        assert sluice_operator.leader(api) == holder
        assert "became leader" not in standby.log_text()
    finally:
        assert standby.stop() == 0
    assert sluice_operator.leader(api) == holder


def test_standby_takes_over_when_the_leader_stops(
    operator: OperatorProcess,
    operator_kubeconfig: Path,
    api: client.ApiClient,
    isvcs: Isvcs,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    holder = sluice_operator.leader(api)
    log = tmp_path_factory.mktemp("operator-log") / "successor.log"
    successor = start_operator(operator_kubeconfig, log, "--all-namespaces")
    wait_for(lambda: "waiting for leadership" in successor.log_text(), what="the standby to wait")
    assert sluice_operator.leader(api) == holder

    # A clean stop hands the Lease back, so the standby need not wait for it to expire.
    assert operator.stop() == 0
    new_holder = wait_for(
        lambda: (
            (sluice_operator.leader(api) or "") not in ("", holder) and sluice_operator.leader(api)
        ),
        what="the standby to take the Lease",
        timeout=10,
    )
    assert f"became leader as {new_holder}" in successor.log_text()
    isvcs.create(isvc_body("after-failover", gpus=1))
    isvcs.wait_condition("after-failover", "Ready", "True")
    assert sluice_operator.leader(api) == new_holder

    # The successor now serves the rest of the module in the stopped operator's place.
    operator.process, operator.log, operator.health_url = (
        successor.process,
        successor.log,
        successor.health_url,
    )


# Shortened from 15/10/2 s so that a takeover after a crash takes seconds.
SHORT_LEASE = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1")


def test_standby_takes_over_after_the_leader_crashes(
    installed: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """SIGKILL leaves the Lease held by a dead process; the standby takes it only once the
    holder's record has stayed unchanged for the lease duration. Both replicas serve only
    this test's namespace and elect on their own Lease there (as admin: the operator's Role
    covers its own Lease only), so they cannot meet the module's operator."""
    lease = f"takeover-{namespace}"
    flags = (
        *("--namespace", namespace, "--lease-namespace", namespace, "--lease-name", lease),
        *SHORT_LEASE,
    )
    first = sluice_operator.start(installed.kubeconfig, tmp_path / "first.log", *flags)
    second: OperatorProcess | None = None
    try:
        crashed = sluice_operator.wait_leading(api, namespace=namespace, name=lease)
        assert f"became leader as {crashed}" in first.log_text()
        second = sluice_operator.start(installed.kubeconfig, tmp_path / "second.log", *flags)
        wait_for(lambda: "waiting for leadership" in second.log_text(), what="the standby")
        assert sluice_operator.leader(api, namespace, lease) == crashed

        assert first.kill() == -9
        successor = wait_for(
            lambda: (
                (sluice_operator.leader(api, namespace, lease) or crashed) != crashed
                and sluice_operator.leader(api, namespace, lease)
            ),
            what="the standby to take the expired Lease",
            timeout=30,
        )
        assert f"became leader as {successor}" in second.log_text()
        record = client.CoordinationV1Api(api).read_namespaced_lease(lease, namespace).spec
        assert record.lease_transitions == 1
        assert record.lease_duration_seconds == 4
        # The new leader keeps the Lease fresh: its renewals move renewTime on.
        renewed = record.renew_time
        wait_for(
            lambda: (
                client.CoordinationV1Api(api)
                .read_namespaced_lease(lease, namespace)
                .spec.renew_time
                != renewed
            ),
            what="the new leader to renew",
            timeout=10,
        )
    finally:
        first.kill()
        if second is not None:
            assert second.stop() == 0
