"""The execution providers runtime pods really use, learned by asking each pod once.

onnxruntime falls back to CPU when a provider cannot start (a GPU node without a working
CUDA, say), and only the runtime knows which one it got: it reports it in its v2 model
metadata (``parameters.execution_provider``). ``reconcile.py`` hands ``observe`` the pods of
an InferenceService from the watch cache and gets back what each variant's pods have said so
far; a Ready pod not yet asked is queued for the provider workers (``Workers`` of
``workqueue.py``, started by ``running.py``), which call ``ask`` and, once a pod answers,
queue its InferenceService so the next run writes the answer into status. A run never waits
for a pod.

What it guarantees:

* a pod is asked once: its answer is kept by pod uid for the pod's life (a container
  restart on the same node gets the same provider), and forgotten when the pod goes;
* a pod that cannot be reached changes nothing already known; it is asked again with the
  queue's back-off, ``ATTEMPTS`` times at most while it stays Ready, and afresh once it has
  been not Ready and is Ready again;
* only live pods (not terminating, not finished) count, so a rollout's old pods stop
  counting as they go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sluice.contracts import ports
from sluice.contracts.labels import LABEL_COMPONENT

from .errors import TemporaryError
from .workqueue import WorkQueue

Key = tuple[str, str]  # (namespace, name) of an InferenceService
# Asks the runtime at (host, port) for the execution provider of ``model``: the provider,
# or None when the pod answers without one; TemporaryError when it cannot be reached.
Fetch = Callable[[str, int, str], str | None]

# Tries per pod while it stays Ready; with the queue's back-off (running.py) about a minute.
ATTEMPTS = 6

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A Ready runtime pod to ask: its InferenceService, variant, address and model."""

    key: Key
    variant: str
    name: str
    host: str
    model: str


@dataclass
class _Entry:
    """What is known of one pod: where to ask it, and its answer once it gave one."""

    target: Target
    answered: bool = False
    provider: str | None = None
    failures: int = 0


class Providers:
    """Execution providers by pod uid; thread-safe (reconcile and provider workers share it).

    ``queue`` takes the uids of pods to ask, ``fetch`` asks one (``runtime_client.py`` in the
    operator), ``learned`` is called with an InferenceService's key when one of its pods
    named its provider. The runtime listens on ``port`` (tests point it elsewhere).
    """

    def __init__(
        self,
        queue: WorkQueue[str],
        fetch: Fetch,
        learned: Callable[[Key], None],
        *,
        port: int = ports.HTTP_PORT,
        attempts: int = ATTEMPTS,
    ) -> None:
        self._queue = queue
        self._fetch = fetch
        self._learned = learned
        self._port = port
        self._attempts = attempts
        self._lock = threading.Lock()
        self._pods: dict[str, _Entry] = {}
        self._by_key: dict[Key, set[str]] = {}

    def observe(
        self, key: Key, model: str, pods: Iterable[Mapping[str, Any]]
    ) -> dict[str, tuple[str, ...]]:
        """Note the current pods of InferenceService ``key``, serving ``model``: queue the
        Ready ones not yet asked, forget the ones gone. Returns, per variant, the distinct
        providers its live pods have reported, sorted; a variant none of whose pods has
        answered is absent."""
        to_ask = []
        reported: dict[str, set[str]] = {}
        with self._lock:
            present = set()
            for pod in pods:
                uid = pod["metadata"].get("uid")
                if not uid or not _live(pod):
                    continue
                present.add(uid)
                entry = self._pods.get(uid)
                if entry is not None and entry.answered:
                    if entry.provider:
                        reported.setdefault(entry.target.variant, set()).add(entry.provider)
                    continue
                target = _target(key, model, pod)
                if target is None:
                    # Not Ready (again): ask afresh once it is, whatever earlier tries gave.
                    present.discard(uid)
                elif entry is None:
                    self._pods[uid] = _Entry(target)
                    to_ask.append(uid)
            for uid in self._by_key.get(key, set()) - present:
                self._pods.pop(uid, None)
            tracked = {uid for uid in present if uid in self._pods}
            if tracked:
                self._by_key[key] = tracked
            else:
                self._by_key.pop(key, None)
        for uid in to_ask:
            self._queue.add(uid)
        return {variant: tuple(sorted(found)) for variant, found in reported.items()}

    def forget(self, key: Key) -> None:
        """Forget every pod of InferenceService ``key`` (it is gone, or reports no provider)."""
        with self._lock:
            for uid in self._by_key.pop(key, set()):
                self._pods.pop(uid, None)

    def ask(self, uid: str) -> None:
        """Ask pod ``uid`` for its execution provider; the provider workers' process function.

        Raises ``TemporaryError`` for the queue to try again later while attempts remain.
        """
        with self._lock:
            entry = self._pods.get(uid)
            if entry is None or entry.answered or entry.failures >= self._attempts:
                return
            target = entry.target
        try:
            provider = self._fetch(target.host, self._port, target.model)
        except TemporaryError as exc:
            with self._lock:
                entry.failures += 1
                exhausted = entry.failures >= self._attempts
            if not exhausted:
                raise
            log.warning(
                "%s/%s: pod %s did not say which execution provider it uses after %d tries: %s",
                *target.key,
                target.name,
                self._attempts,
                exc,
            )
            return
        with self._lock:
            if self._pods.get(uid) is not entry:
                return  # the pod went (or stopped being Ready) while it was asked
            entry.answered = True
            entry.provider = provider
        if provider is None:
            log.info("%s/%s: pod %s reports no execution provider", *target.key, target.name)
            return
        log.info("%s/%s: pod %s uses %s", *target.key, target.name, provider)
        self._learned(target.key)


def _target(key: Key, model: str, pod: Mapping[str, Any]) -> Target | None:
    """Where to ask a pod, or None unless it is Ready with an address and a variant."""
    meta = pod["metadata"]
    status = pod.get("status") or {}
    variant = (meta.get("labels") or {}).get(LABEL_COMPONENT)
    host = status.get("podIP")
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if not (ready and host and variant):
        return None
    return Target(key, str(variant), str(meta["name"]), str(host), model)


def _live(pod: Mapping[str, Any]) -> bool:
    """A pod that counts: not terminating and not finished."""
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
