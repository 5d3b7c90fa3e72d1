"""Run one operator benchmark: cluster up, operator up, N InferenceServices, measure.

The operator runs as a subprocess with its ServiceAccount's token, as in the integration
tests. Requests are counted by the API server itself: two FlowSchemas (``flowschemas.yaml``)
classify everything the ServiceAccount sends, and ``apiserver_flowcontrol_dispatched_requests
_total`` is read from ``/metrics`` before and after. Peak memory is the operator's VmHWM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e.cluster import control_plane
from e2e.cluster.client import Cluster

ROOT = Path(__file__).resolve().parents[2]
FLOWSCHEMAS = Path(__file__).with_name("flowschemas.yaml")
NAMESPACE = "bench"
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
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "-f", str(ROOT / "crds"))
    for manifest in ("00-namespace.yaml", "10-rbac.yaml"):
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests/operator" / manifest))
    cluster.kubectl("apply", "--server-side", "-f", str(FLOWSCHEMAS))
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    kubeconfig = cluster.service_account_kubeconfig(
        "sluice-system", "sluice-operator", cluster.workdir / "operator.kubeconfig"
    )
    log = (cluster.workdir / "operator.log").open("wb")
    operator = subprocess.Popen(
        [sys.executable, "-m", "sluice.operator", "--kubeconfig", str(kubeconfig), "-A"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        with cluster.api_client() as api:
            custom = client.CustomObjectsApi(api)
            _wait(lambda: _leader(api), timeout=60, what="operator leadership")
            start_counts = _requests(cluster)
            started = time.monotonic()
            for index in range(count):
                custom.create_namespaced_custom_object(
                    "serving.sluice.dev", "v1alpha1", NAMESPACE, "inferenceservices", _isvc(index)
                )
            print(f"created {count} InferenceServices in {time.monotonic() - started:.1f}s")
            apps = client.AppsV1Api(api)
            applied: list[float] = []

            def all_ready() -> bool:
                if not applied and _deployments(apps) >= count:
                    applied.append(time.monotonic() - started)
                return _ready(custom) >= count

            _wait(
                all_ready,
                timeout=timeout,
                what=f"{count} InferenceServices Ready",
                progress=lambda: f"{_ready(custom)}/{count} Ready",
            )
            elapsed = time.monotonic() - started
            converged = _requests(cluster)
            # Child status updates trail the last Ready by a few seconds; let them pass so the
            # idle window shows the steady state only.
            time.sleep(settle)
            settled = _requests(cluster)
            time.sleep(idle)
            after_idle = _requests(cluster)
        status = _proc_status(operator.pid)
        cpu = _cpu_seconds(operator.pid)
    finally:
        if operator.poll() is None:
            os.kill(operator.pid, signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(operator.pid, signal.SIGKILL)
                operator.wait(timeout=10)
        log.close()
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


def _isvc(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "serving.sluice.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": f"model-{index:04d}"},
        "spec": {"model": {"uri": "file:///models/mlp.onnx"}, "resources": {"gpus": 1}},
    }


def _ready(custom: client.CustomObjectsApi) -> int:
    listed = custom.list_namespaced_custom_object(
        "serving.sluice.dev", "v1alpha1", NAMESPACE, "inferenceservices"
    )
    return sum(
        1
        for item in listed["items"]
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (item.get("status") or {}).get("conditions") or []
        )
    )


def _deployments(apps: client.AppsV1Api) -> int:
    listed = apps.list_namespaced_deployment(
        NAMESPACE, label_selector="serving.sluice.dev/inferenceservice"
    )
    return len(listed.items)


def _leader(api: client.ApiClient) -> bool:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            "sluice-operator", "sluice-system"
        )
    except client.ApiException:
        return False
    return bool(lease.spec.holder_identity)


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


def _wait(
    probe: Callable[[], object],
    *,
    timeout: float,
    what: str,
    progress: Callable[[], str] | None = None,
    every: float = 1.0,
) -> None:
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while time.monotonic() < deadline:
        if probe():
            return
        if progress is not None and time.monotonic() - last_report > 10:
            print(progress(), flush=True)
            last_report = time.monotonic()
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
