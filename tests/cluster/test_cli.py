"""``python -m e2e.cluster up`` / ``down``: idempotent start, and nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.cluster.client import Cluster
from e2e.cluster.processes import Registry
from tests.cluster.commands import cli

pytestmark = pytest.mark.cluster


# Fake nodes only: the session cluster holds this machine's one real node (the real node's
# own up and down are tested in test_node_lifecycle.py).
UP = ("--real-nodes", "0", "--gpu-nodes", "2", "--gpus-per-node", "4")


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "cli-cluster"
    try:
        first = cli("up", "--workdir", str(workdir), *UP)
        assert first.stdout.splitlines()[-1] == f"export KUBECONFIG={workdir / 'kubeconfig'}"
        started = Registry(workdir).load()
        assert {p.name for p in started} == {
            "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"
        }  # fmt: skip

        again = cli("up", "--workdir", str(workdir), *UP)
        assert "already running" in again.stderr
        assert Registry(workdir).load() == started

        cluster = Cluster.load(workdir)
        listing = cluster.kubectl("get", "nodes", "-o", "wide").stdout
        assert "gpu-node-0" in listing
        assert "gpu-node-1" in listing
        nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        assert [n["status"]["allocatable"]["nvidia.com/gpu"] for n in nodes] == ["4", "4"]
    finally:
        cli("down", "--workdir", str(workdir))
    assert not any(p.alive() for p in started)
    assert Registry(workdir).load() == []
