"""Run one operator benchmark: cluster up, operator up, N InferenceServices, measure.

The operator is installed, started and stopped by ``e2e.cluster.operator``, as in the
integration tests: the ``sluice-operator`` command with its ServiceAccount's token. Requests
are counted by the API server itself: two FlowSchemas (``flowschemas.yaml``) classify
everything the ServiceAccount sends, and ``apiserver_flowcontrol_dispatched_requests_total``
is read from ``/metrics`` before and after. Peak memory is the operator's VmHWM.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from sluice.contracts.api import API_VERSION, GROUP, KIND, PLURAL, VERSION

from e2e.cluster import control_plane
from e2e.cluster import operator as sluice_operator
from e2e.cluster.client import Cluster
from e2e.cluster.nodes import fake_node_namespace_annotations
from e2e.cluster.waiting import wait_for

FLOWSCHEMAS = Path(__file__).with_name("flowschemas.yaml")
NAMESPACE = "bench"
CREATORS = 8  # threads creating InferenceServices, within the client's connection pool
_METRIC = re.compile(
    r'^apiserver_flowcontrol_dispatched_requests_total\{flow_schema="(sluice-operator-\w+)"'
    r".*\} ([0-9.e+]+)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Result:
    """What one run measured."""

    count: int
    nodes: int
    seconds_to_children: float  # until every InferenceService had its Deployment
    seconds_to_ready: float
    requests: dict[str, float]  # "writes"/"reads" from the first create to all Ready
    idle_requests: dict[str, float]  # the same in an idle window after settling
    idle_seconds: float
    peak_rss_mib: float
    cpu_seconds: float


def run(
    *,
    count: int,
    nodes: int,
    gpus_per_node: int,
    workdir: Path,
    timeout: float,
    settle: float,
    idle: float,
) -> Result:
    """Start everything in ``workdir``, measure, and stop the operator and the cluster."""
    cluster = control_plane.up(
        workdir, gpu_nodes=nodes, gpus_per_node=gpus_per_node, log=lambda m: print(m, flush=True)
    )
    try:
        return _measure(
            cluster, count=count, nodes=nodes, timeout=timeout, settle=settle, idle=idle
        )
    finally:
        control_plane.down(workdir)


def _measure(
    cluster: Cluster, *, count: int, nodes: int, timeout: float, settle: float, idle: float
) -> Result:
    sluice_operator.install(cluster)
    cluster.kubectl("apply", "--server-side", "-f", str(FLOWSCHEMAS))
    # Its pods are meant for the fake GPU nodes (they only pretend to run).
    namespace = {"metadata": {"name": NAMESPACE, "annotations": fake_node_namespace_annotations()}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(namespace), check=False)
    kubeconfig = sluice_operator.kubeconfig(cluster, cluster.workdir / "operator.kubeconfig")
    operator = sluice_operator.start(kubeconfig, cluster.workdir / "operator.log", "-A")
    try:
        with cluster.api_client() as api:
            custom = client.CustomObjectsApi(api)
            sluice_operator.wait_leading(api)
            start_counts = _requests(cluster)
            started = time.monotonic()
            # Created as a burst, as a CI pipeline or a tenant migration would: a sequential
            # client would make the benchmark's own pace, not the operator's, the measure.
            with ThreadPoolExecutor(CREATORS) as creators:
                list(creators.map(lambda i: _create(custom, i), range(count)))  # raises failures
            print(f"created {count} InferenceServices in {time.monotonic() - started:.1f}s")
            apps = client.AppsV1Api(api)
            applied: list[float] = []

            progress = _Progress(every=10)

            def all_ready() -> bool:
                if not applied and _deployments(apps) >= count:
                    applied.append(time.monotonic() - started)
                ready = _ready(custom)
                progress.report(f"{ready}/{count} Ready")
                return ready >= count

            wait_for(
                all_ready, timeout=timeout, interval=1.0, what=f"{count} InferenceServices Ready"
            )
            elapsed = time.monotonic() - started
            converged = _requests(cluster)
            # Child status updates trail the last Ready by a few seconds; let them pass so the
            # idle window shows the steady state only.
            time.sleep(settle)
            settled = _requests(cluster)
            time.sleep(idle)
            after_idle = _requests(cluster)
        status = _proc_status(operator.process.pid)
        cpu = _cpu_seconds(operator.process.pid)
    finally:
        operator.stop(timeout=30)
    return Result(
        count=count,
        nodes=nodes,
        seconds_to_children=applied[0] if applied else elapsed,
        seconds_to_ready=elapsed,
        requests=_diff(converged, start_counts),
        idle_requests=_diff(after_idle, settled),
        idle_seconds=idle,
        peak_rss_mib=status["VmHWM"] / 1024,
        cpu_seconds=cpu,
    )


def _create(custom: client.CustomObjectsApi, index: int) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _isvc(index))


def _isvc(index: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": f"model-{index:04d}"},
        "spec": {"model": {"uri": "file:///models/mlp.onnx"}, "resources": {"gpus": 1}},
    }


def _ready(custom: client.CustomObjectsApi) -> int:
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
    return sum(
        1
        for item in listed["items"]
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (item.get("status") or {}).get("conditions") or []
        )
    )


def _deployments(apps: client.AppsV1Api) -> int:
    """Deployments in the benchmark's namespace (only the operator makes any), counted from a
    one-item page: listing a thousand in full every second would load the API server the
    benchmark measures. (The count is not reported for a label-selected list.)"""
    listed = apps.list_namespaced_deployment(NAMESPACE, limit=1)
    return len(listed.items) + int(listed.metadata.remaining_item_count or 0)


def _requests(cluster: Cluster) -> dict[str, float]:
    """The operator's requests so far, by FlowSchema, as the API server counted them."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    counts = {"writes": 0.0, "reads": 0.0}
    for schema, value in _METRIC.findall(text):
        counts[schema.removeprefix("sluice-operator-")] += float(value)
    return counts


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


def _proc_status(pid: int) -> dict[str, int]:
    """Numeric kB fields of /proc/PID/status (VmHWM is the peak resident set)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[key] = int(parts[0])
    return fields


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the operator used."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Progress:
    """Prints a progress line at most every ``every`` seconds while a long wait runs."""

    def __init__(self, *, every: float) -> None:
        self.every = every
        self.last = time.monotonic()

    def report(self, line: str) -> None:
        """Print ``line`` if the last one is ``every`` seconds old."""
        if time.monotonic() - self.last >= self.every:
            print(line, flush=True)
            self.last = time.monotonic()
