"""Decide whether a child needs a write: desired object versus what the cluster holds.

Pure functions, called by ``reconcile.py``. Two checks, both needed:

* a fingerprint annotation (a hash of the desired object) catches every change of intent,
  including fields the operator stopped setting (server-side apply removes those, but a plain
  comparison cannot see them);
* a subset comparison catches hand edits of fields the operator owns (someone scaled the
  Deployment or deleted a Service port), which leave the annotation untouched.

Fields the API server adds (defaults, status, metadata) are ignored: only what the operator
sets is compared. Kubernetes drops empty values and canonicalises quantities, so those are
compared by meaning, not by spelling.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kubernetes.utils import parse_quantity
from sluice.contracts.labels import ANNOTATION_FINGERPRINT

_EMPTY: tuple[Any, ...] = (None, "", {}, [])


def fingerprint(obj: dict[str, Any]) -> str:
    """A short stable hash of an object's canonical JSON form."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamped(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a desired object carrying its own fingerprint as an annotation."""
    result = copy.deepcopy(obj)
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(ANNOTATION_FINGERPRINT, None)
    annotations[ANNOTATION_FINGERPRINT] = fingerprint(obj)
    return result


def needs_apply(desired: dict[str, Any], observed: dict[str, Any] | None) -> bool:
    """True when the stamped ``desired`` object differs from ``observed`` in any way that
    the operator cares about; False means an apply would change nothing."""
    if observed is None:
        return True
    want = desired.get("metadata", {}).get("annotations", {}).get(ANNOTATION_FINGERPRINT)
    have = (observed.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_FINGERPRINT)
    if want != have:
        return True
    return not contains(observed, desired)


def contains(observed: Any, desired: Any, *, quantities: bool = False) -> bool:
    """Whether ``observed`` holds every value of ``desired`` (extra fields are fine)."""
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return False
        for key, value in desired.items():
            inner = quantities or key in ("limits", "requests")
            if key not in observed:
                if value in _EMPTY:
                    continue
                return False
            if not contains(observed[key], value, quantities=inner):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(
            contains(o, d, quantities=quantities) for o, d in zip(observed, desired, strict=True)
        )
    return _same_scalar(observed, desired, quantities=quantities)


def _same_scalar(observed: Any, desired: Any, *, quantities: bool) -> bool:
    """Scalars are equal as values, or as quantities inside resource limits/requests."""
    if observed == desired:
        return True
    if quantities:
        try:
            same: bool = parse_quantity(observed) == parse_quantity(desired)  # type: ignore[no-untyped-call,unused-ignore]
            return same
        except ValueError:
            return False
    return False
