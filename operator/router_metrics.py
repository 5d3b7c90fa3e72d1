"""Reads the router pods' Prometheus metrics, and keeps the baselines that turn them into the
canary's traffic in one analysis window.

Called by ``reconcile.py`` while a canary rollout is judging a step. ``fetch`` asks every
router pod for ``/metrics`` on its metrics port (``ports.ROUTER_METRICS_PORT``), all pods at
once, each within ``timeout`` seconds, and reports a pod that did not answer instead of
raising: one unreadable pod makes the sum of the counters meaningless, so ``Scrape.total`` then
answers None and the caller treats the window as unknown (``rollout.Observation.window``). The
same reading of the canary's runtime pods on their HTTP port serves when a Gateway API
implementation routes instead of the router (``analysis.from_runtime_metrics``).

The counters are cumulative. ``Baselines`` remembers, per InferenceService, the reading taken
when the current window began (``rollout.Decision.window_start``), and gives the difference
since then. It lives in memory only: after an operator restart the first reading of a window
becomes its baseline, so the step stays where it was but its window restarts, counting the
canary's requests from then on (the step's start time, and so its deadline, stay as they are).
A counter that went backwards (a router pod restarted or left) restarts the window the same
way.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import urllib3
from sluice.contracts import labels, ports, routes

from .analysis import Sample, add, from_router_metrics, from_runtime_metrics, since
from .rollout_status import RolloutState
from .spec import InferenceService

# Envoy's statistics for a few clusters are some hundred KiB; far more is not an answer.
MAX_BYTES = 32 << 20
# Pods read at once; a router runs a handful of pods.
MAX_PARALLEL = 8
USER_AGENT = "sluice-operator/0.1.0"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scrape:
    """One reading of every router pod: ``texts`` by pod IP for those that answered, and
    ``failures`` by pod IP, saying why, for those that did not."""

    texts: Mapping[str, str]
    failures: Mapping[str, str]

    def total(self, read: Callable[[str], Sample]) -> Sample | None:
        """The figures ``read`` finds in each pod's text, summed over the pods (for example
        ``lambda text: analysis.from_router_metrics(text, routes.CANARY)``); None when a pod
        did not answer, a text could not be read, or there were no pods."""
        if self.failures or not self.texts:
            return None
        total = Sample()
        for text in self.texts.values():
            try:
                total = add(total, read(text))
            except ValueError:
                return None
        return total


def fetch(
    pod_ips: Iterable[str],
    port: int = ports.ROUTER_METRICS_PORT,
    timeout: float = 2.0,
    *,
    path: str = ports.METRICS_PATH,
) -> Scrape:
    """GET ``path`` on ``port`` of every pod at once, each within ``timeout`` seconds in all."""
    ips = list(dict.fromkeys(pod_ips))
    texts: dict[str, str] = {}
    failures: dict[str, str] = {}
    if not ips:
        return Scrape(texts, failures)
    http = urllib3.PoolManager(
        num_pools=len(ips), retries=False, timeout=urllib3.Timeout(total=timeout)
    )
    try:
        workers = min(len(ips), MAX_PARALLEL)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            answers = pool.map(lambda ip: _read(http, ip, port, path), ips)
            for ip, (text, failure) in zip(ips, answers, strict=True):
                if failure is None:
                    texts[ip] = text
                else:
                    failures[ip] = failure
    finally:
        http.clear()
    return Scrape(texts, failures)


def _read(http: urllib3.PoolManager, ip: str, port: int, path: str) -> tuple[str, str | None]:
    """(text, None) from one pod, or ("", why it could not be read)."""
    address = f"[{ip}]" if ":" in ip else ip  # IPv6
    url = f"http://{address}:{port}{path}"
    try:
        response = http.request(
            "GET", url, headers={"User-Agent": USER_AGENT}, preload_content=False
        )
        try:
            body = response.read(MAX_BYTES + 1)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        return "", f"GET {url}: {exc}"
    if response.status != 200:
        return "", f"GET {url}: HTTP {response.status}"
    if len(body) > MAX_BYTES:
        return "", f"GET {url}: more than {MAX_BYTES} bytes"
    return body.decode("utf-8", errors="replace"), None


class RouterMetrics:
    """Reads a canary's cumulative counters now, for the reconciler: from the router pods, or
    from the canary's own runtime pods when a Gateway API implementation routes its traffic
    (``spec.traffic.provider``). Only Ready pods with an IP are read, on ``router_port`` and
    ``runtime_port`` (the contract's ports)."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        router_port: int = ports.ROUTER_METRICS_PORT,
        runtime_port: int = ports.HTTP_PORT,
    ) -> None:
        self._timeout = timeout
        self._router_port = router_port
        self._runtime_port = runtime_port

    def canary_sample(
        self, isvc: InferenceService, pods: Iterable[Mapping[str, Any]]
    ) -> Sample | None:
        """The canary's figures summed over the pods that carry them, among the
        InferenceService's ``pods``; None when one of them could not be read."""
        if isvc.traffic.provider == "GatewayAPI":
            ips = _ready_ips(pods, routes.CANARY)
            scrape = fetch(ips, self._runtime_port, self._timeout)
            sample = scrape.total(lambda text: from_runtime_metrics(text, isvc.model.name))
        else:
            scrape = fetch(_ready_ips(pods, labels.ROUTER), self._router_port, self._timeout)
            sample = scrape.total(lambda text: from_router_metrics(text, routes.CANARY))
        for failure in scrape.failures.values():
            log.info("%s/%s: canary metrics: %s", isvc.namespace, isvc.name, failure)
        return sample


def _ready_ips(pods: Iterable[Mapping[str, Any]], component: str) -> list[str]:
    """The IPs of the Ready, not terminating pods of ``component``."""
    found = []
    for pod in pods:
        meta, st = pod.get("metadata") or {}, pod.get("status") or {}
        if (meta.get("labels") or {}).get(labels.LABEL_COMPONENT) != component:
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in st.get("conditions") or []
        )
        if ready and st.get("podIP") and not meta.get("deletionTimestamp"):
            found.append(str(st["podIP"]))
    return found


class WindowKey(NamedTuple):
    """An analysis window: of one InferenceService's canary revision, at one step begun at
    one time (``window`` names the step and its start)."""

    namespace: str
    name: str
    revision: str
    window: str

    @classmethod
    def of(cls, namespace: str, name: str, state: RolloutState) -> WindowKey:
        """The window ``state`` is in: its canary revision, step and the step's start."""
        started = state.to_status().get("stepStartTime", "")
        return cls(namespace, name, state.canary_revision, f"{state.step}@{started}")


class Baselines:
    """The reading each InferenceService's current window began with, in memory; one window
    per InferenceService, so a new one replaces the last."""

    def __init__(self) -> None:
        self._bases: dict[tuple[str, str], tuple[WindowKey, Sample]] = {}

    def window(self, key: WindowKey, sample: Sample | None, start: bool) -> Sample | None:
        """The traffic in window ``key`` up to ``sample``, the reading now.

        ``start``: the window begins now; ``sample`` becomes its baseline and the window is
        empty. Without a baseline for ``key`` (a restart, or a window begun elsewhere),
        ``sample`` becomes it and the answer is None, as it is when ``sample`` is None (the
        reading failed; the baseline stays) or a counter went backwards (a new baseline).
        """
        if sample is None:
            return None
        owner = (key.namespace, key.name)
        held = self._bases.get(owner)
        if start or held is None or held[0] != key:
            self._bases[owner] = (key, sample)
            return since(sample, sample) if start else None
        window = since(sample, held[1])
        if window is None:
            self._bases[owner] = (key, sample)
        return window

    def forget(self, namespace: str, name: str) -> None:
        """Drop the InferenceService's baseline: its rollout ended, or it is gone."""
        self._bases.pop((namespace, name), None)
