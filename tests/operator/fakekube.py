"""An in-memory stand-in for ``sluice.operator.kube.Kube``, for fast tests of reconcile logic.

It keeps objects the way the API server does where the operator's logic depends on it: uids,
numeric resourceVersions, ``generation`` bumped on spec changes, server-side apply that keeps
fields other managers set (status, an autoscaler's replicas) and drops fields this manager
stopped applying, merge-patched status, generateName, delete with a uid precondition. Every
write is recorded in ``writes``, and every change is queued as a watch event in ``events``
until ``deliver`` hands them to a ``Cache``, so tests decide when the operator's watch
catches up. ``fail`` makes the next call of a verb on a kind raise the given error.

Everything the real API server does beyond this (validation, defaulting, the controllers) is
proven against it in tests/integration.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

from sluice.contracts.labels import LABEL_COMPONENT, LABEL_INFERENCESERVICE
from sluice.operator.cache import Cache
from sluice.operator.errors import OperatorError, TemporaryError

Body = dict[str, Any]
ObjectKey = tuple[str, str, str, str]  # (apiVersion, kind, namespace, name)


class FakeKube:
    """The operator's API verbs over a dict of objects."""

    def __init__(self) -> None:
        self.objects: dict[ObjectKey, Body] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.events: list[tuple[str, Body]] = []  # watch events not yet delivered
        self._applied: dict[ObjectKey, Body] = {}  # the last applied configuration
        self._failures: dict[tuple[str, str], OperatorError] = {}
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    # Test controls.

    def fail(self, verb: str, kind: str, error: OperatorError) -> None:
        """Make the next ``verb`` on ``kind`` raise ``error``."""
        self._failures[(verb, kind)] = error

    def deliver(self, cache: Cache) -> None:
        """Hand every pending watch event to ``cache``, as kopf's handlers would."""
        for kind, body in self.events:
            if kind == "DELETED":
                meta = body["metadata"]
                cache.remove(body["apiVersion"], body["kind"], meta["namespace"], meta["name"])
            else:
                cache.put(copy.deepcopy(body))
        self.events.clear()

    def put(self, body: Mapping[str, Any]) -> Body:
        """Store an object as another client would (a user, a controller); not a write of
        the operator's, so not recorded in ``writes``."""
        return self._store(copy.deepcopy(dict(body)))

    def writes_of(self, verb: str) -> list[tuple[str, str]]:
        """(kind, name) of each recorded write with ``verb``."""
        return [(kind, name) for v, kind, name in self.writes if v == verb]

    # The verbs of sluice.operator.kube.Kube.

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        self._maybe_fail("get", kind)
        found = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, api_version: str, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[Body]:
        self._maybe_fail("list", kind)
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [
            copy.deepcopy(obj)
            for (v, k, ns, _), obj in sorted(self.objects.items())
            if (v, k) == (api_version, kind)
            and namespace in (None, ns)
            and all(
                (obj["metadata"].get("labels") or {}).get(key) == value
                for key, value in wanted.items()
            )
        ]

    def apply(self, obj: Body) -> Body:
        self._write("apply", obj["kind"], obj["metadata"]["name"])
        key = _key(obj)
        held = self.objects.get(key)
        if held is None:
            merged = copy.deepcopy(obj)
        else:
            merged = _merge(_without(held, self._applied.get(key, {})), copy.deepcopy(obj))
        self._applied[key] = copy.deepcopy(obj)
        return copy.deepcopy(self._store(merged))

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Body
    ) -> Body:
        self._write("patch_status", kind, name)
        held = copy.deepcopy(self.objects[(api_version, kind, namespace, name)])
        held["status"] = _merge_patch(held.get("status") or {}, status)
        return copy.deepcopy(self._store(held))

    def remove_annotation(
        self, api_version: str, kind: str, namespace: str, name: str, key: str
    ) -> Body:
        self._write("remove_annotation", kind, name)
        held = copy.deepcopy(self.objects[(api_version, kind, namespace, name)])
        (held["metadata"].get("annotations") or {}).pop(key, None)
        return copy.deepcopy(self._store(held))

    def create(self, obj: Body) -> Body:
        self._write("create", obj["kind"], obj["metadata"].get("name", ""))
        body = copy.deepcopy(obj)
        meta = body["metadata"]
        if "name" not in meta:
            meta["name"] = f"{meta['generateName']}{next(self._uids):05d}"
        if _key(body) in self.objects:
            raise TemporaryError(f"conflict: {meta['name']} already exists", delay=1.0)
        return copy.deepcopy(self._store(body))

    def delete(self, api_version: str, kind: str, namespace: str, name: str, *, uid: str) -> None:
        self._write("delete", kind, name)
        key = (api_version, kind, namespace, name)
        held = self.objects.get(key)
        if held is None:
            return
        if held["metadata"]["uid"] != uid:
            raise TemporaryError(f"conflict: {name} has another uid", delay=1.0)
        del self.objects[key]
        self._applied.pop(key, None)
        self.events.append(("DELETED", copy.deepcopy(held)))

    # Internals.

    def _write(self, verb: str, kind: str, name: str) -> None:
        self._maybe_fail(verb, kind)
        self.writes.append((verb, kind, name))

    def _maybe_fail(self, verb: str, kind: str) -> None:
        error = self._failures.pop((verb, kind), None)
        if error is not None:
            raise error

    def _store(self, body: Body) -> Body:
        """Keep ``body`` as the new version of its object, the way the API server would."""
        key = _key(body)
        held = self.objects.get(key)
        meta = body["metadata"]
        meta.setdefault("namespace", key[2])
        if held is None:
            meta["uid"] = meta.get("uid") or f"uid-{next(self._uids)}"
            meta["generation"] = 1
        else:
            meta["uid"] = held["metadata"]["uid"]
            generation = held["metadata"].get("generation", 1)
            changed = body.get("spec") != held.get("spec")
            meta["generation"] = generation + 1 if changed else generation
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = body
        self.events.append(("ADDED" if held is None else "MODIFIED", copy.deepcopy(body)))
        return body


def _key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def _without(held: Mapping[str, Any], applied: Mapping[str, Any]) -> Body:
    """``held`` less the fields the last apply set: what other managers own."""
    result: Body = {}
    for key, value in held.items():
        if key in ("apiVersion", "kind") or key not in applied:
            result[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(applied[key], dict):
            rest = _without(value, applied[key])
            if rest:
                result[key] = rest
    # Identity is the server's, never a manager's.
    if "metadata" in held:
        meta = result.setdefault("metadata", {})
        for field in ("name", "namespace", "uid", "generation", "resourceVersion"):
            if field in held["metadata"]:
                meta[field] = held["metadata"][field]
    return result


def _merge(base: Body, applied: Mapping[str, Any]) -> Body:
    """``applied`` laid over ``base``: maps merge, everything else is replaced."""
    result = dict(base)
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> Body:
    """RFC 7386 JSON merge patch: None deletes, maps merge, the rest is replaced."""
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def ready_pod(name: str, namespace: str, owner: str, ip: str) -> dict[str, Any]:
    """A Ready, scheduled runtime pod of ``owner``'s predictor variant at address ``ip``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_INFERENCESERVICE: owner, LABEL_COMPONENT: "predictor"},
        },
        "spec": {"nodeName": "gpu-0", "containers": [{"name": "runtime"}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        },
    }
