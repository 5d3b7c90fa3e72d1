"""An in-memory copy of the objects the operator watches, read by reconcile instead of GETs.

Fed by the kopf handlers in ``handlers.py`` from the watch streams kopf already holds (the
InferenceServices and the Deployments, Services and Pods labelled as their children), and by
``reconcile.py`` with the objects its own writes return, so a run that follows a write at once
does not act on what it replaced. Read by ``reconcile.py``: one object by name, or every
object of a kind that carries an InferenceService's label.

Objects are kept trimmed: ``metadata.managedFields`` always goes (it is most of an object's
size and nobody reads it), and a Pod keeps only what reconcile reads from it
(``_pod_summary``): what status says of scheduling, and what it takes to ask a Ready runtime
pod for its execution provider (``providers.py``). Readiness is kept, so a pod turning Ready
wakes its InferenceService; a probe's timestamps and a container's restarts are not, and wake
nobody.
A newer object never gives way to an older one: resourceVersions are compared as numbers,
which is what the API server's etcd revisions are, so a late watch event cannot undo the
result of a write.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

Body = dict[str, Any]
KindKey = tuple[str, str]  # (apiVersion, kind)

POD: KindKey = ("v1", "Pod")


class Cache:
    """Objects by kind and name, and by the value of one owner label; thread-safe."""

    def __init__(self, owner_label: str) -> None:
        self._owner_label = owner_label
        self._lock = threading.Lock()
        self._objects: dict[tuple[KindKey, str, str], Body] = {}
        # (kind, namespace, owner label value) -> names of objects carrying it.
        self._owned: dict[tuple[KindKey, str, str], set[str]] = {}

    def put(self, body: Mapping[str, Any]) -> bool:
        """Store ``body`` unless an object at least as new is held; True when what is
        kept of it changed (a new object, or a change beyond its resourceVersion)."""
        kind: KindKey = (body["apiVersion"], body["kind"])
        trimmed = _pod_summary(body) if kind == POD else _trim(body)
        meta = trimmed["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        with self._lock:
            held = self._objects.get(key)
            if held is not None and _older(meta, held["metadata"]):
                return False
            self._objects[key] = trimmed
            self._unindex(kind, held)
            owner = (meta.get("labels") or {}).get(self._owner_label)
            if owner is not None:
                self._owned.setdefault((kind, meta["namespace"], owner), set()).add(meta["name"])
        return held is None or _without_version(held) != _without_version(trimmed)

    def remove(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Forget an object that was deleted."""
        kind_key = (api_version, kind)
        with self._lock:
            self._unindex(kind_key, self._objects.pop((kind_key, namespace, name), None))

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        """The object as last seen, or None."""
        with self._lock:
            return self._objects.get(((api_version, kind), namespace, name))

    def owned(self, api_version: str, kind: str, namespace: str, owner: str) -> list[Body]:
        """Objects of a kind in ``namespace`` whose owner label is ``owner``, by name."""
        kind_key = (api_version, kind)
        with self._lock:
            names = sorted(self._owned.get((kind_key, namespace, owner), ()))
            return [self._objects[(kind_key, namespace, name)] for name in names]

    def keys(self, api_version: str, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every object of a kind."""
        kind_key = (api_version, kind)
        with self._lock:
            return [(ns, name) for (k, ns, name) in self._objects if k == kind_key]

    def _unindex(self, kind: KindKey, held: Body | None) -> None:
        if held is None:
            return
        meta = held["metadata"]
        owner = (meta.get("labels") or {}).get(self._owner_label)
        names = self._owned.get((kind, meta["namespace"], owner or ""))
        if names is not None:
            names.discard(meta["name"])
            if not names:
                del self._owned[(kind, meta["namespace"], owner or "")]


def _trim(body: Mapping[str, Any]) -> Body:
    """A shallow copy without managedFields: nested values are shared, never mutated."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return {**body, "metadata": meta}


def _pod_summary(pod: Mapping[str, Any]) -> Body:
    """What reconcile reads from a pod: liveness, node, GPU limits and scheduling verdict
    (``status.py``); uid, address and readiness (``providers.py``)."""
    meta = pod["metadata"]
    spec = pod.get("spec") or {}
    st = pod.get("status") or {}
    conditions = st.get("conditions") or []
    return {
        "apiVersion": pod["apiVersion"],
        "kind": pod["kind"],
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "resourceVersion", "deletionTimestamp")
            if k in meta
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [
                {"resources": {"limits": (c.get("resources") or {}).get("limits") or {}}}
                for c in spec.get("containers") or []
            ],
        },
        "status": {
            "phase": st.get("phase"),
            "podIP": st.get("podIP"),
            "conditions": [
                *(c for c in conditions if c.get("type") == "PodScheduled"),
                *(
                    {"type": "Ready", "status": c.get("status")}
                    for c in conditions
                    if c.get("type") == "Ready"
                ),
            ],
        },
    }


def _older(new: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    """Whether ``new`` is an older version of the object than ``held``."""
    try:
        return int(new.get("resourceVersion", "")) < int(held.get("resourceVersion", ""))
    except ValueError:
        return False


def _without_version(body: Mapping[str, Any]) -> Body:
    meta = {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}
    return {**body, "metadata": meta}
