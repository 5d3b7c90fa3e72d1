"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

Used by ``running.py``: only the replica holding the Lease runs kopf's handlers. A candidate
takes the Lease only after it has watched the holder's record stay unchanged for a whole
``lease_duration`` on its own monotonic clock (so wall-clock skew between nodes does not
matter), and every write is a compare-and-swap on ``resourceVersion``. The holder gives up
(``running.py`` ends the process) when it could not renew for ``renew_deadline``, which is
shorter than ``lease_duration``: the old leader has stopped before a new one can start.

kopf's own peering is not used: it pauses lower-priority peers on a best-effort basis and
lets equal-priority peers run together, which is no guarantee of a single active instance.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import TemporaryError
from .kube import Kube

API_VERSION = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class LeaseSettings:
    """Where the Lease lives, who we are, and the client-go style timings in seconds."""

    namespace: str
    identity: str
    name: str = "sluice-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate's view of the Lease; call ``try_acquire_or_renew`` every retry period."""

    def __init__(
        self,
        kube: Kube,
        settings: LeaseSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self.settings = settings
        self._monotonic = monotonic
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.leading = False

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease if it is ours to take; False when another holds it or the
        attempt failed. Never raises for API trouble: that is just a failed attempt."""
        try:
            self.leading = self._attempt()
        except TemporaryError:
            self.leading = False
        return self.leading

    def release(self) -> None:
        """Hand the Lease back on a clean shutdown, so a standby takes over at once."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = self._kube.get(
                API_VERSION, "Lease", self.settings.namespace, self.settings.name
            )
            if lease is None or lease["spec"].get("holderIdentity") != self.settings.identity:
                return
            lease["spec"].update(
                holderIdentity=None,
                leaseDurationSeconds=1,
                renewTime=_micro_time(datetime.datetime.now(datetime.UTC)),
            )
            self._kube.replace(lease)
        except TemporaryError:
            pass  # the Lease simply expires after lease_duration

    def _attempt(self) -> bool:
        s = self.settings
        now = datetime.datetime.now(datetime.UTC)
        lease = self._kube.get(API_VERSION, "Lease", s.namespace, s.name)
        record = {
            "holderIdentity": s.identity,
            "leaseDurationSeconds": round(s.lease_duration),
            "acquireTime": _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": 0,
        }
        if lease is None:
            self._kube.create(
                {
                    "apiVersion": API_VERSION,
                    "kind": "Lease",
                    "metadata": {"name": s.name, "namespace": s.namespace},
                    "spec": record,
                }
            )
            self._remember(record)
            return True
        held = lease.get("spec") or {}
        self._remember(held)
        holder = held.get("holderIdentity")
        duration = float(held.get("leaseDurationSeconds") or s.lease_duration)
        if holder and holder != s.identity and self._monotonic() - self._observed_at < duration:
            return False
        if holder == s.identity:
            record["acquireTime"] = held.get("acquireTime") or record["acquireTime"]
            record["leaseTransitions"] = int(held.get("leaseTransitions") or 0)
        else:
            record["leaseTransitions"] = int(held.get("leaseTransitions") or 0) + 1
        lease["spec"] = record
        self._kube.replace(lease)  # resourceVersion in metadata: a lost race is a 409
        self._remember(record)
        return True

    def _remember(self, held: dict[str, Any]) -> None:
        """Restart the expiry clock whenever the holder's record changes."""
        key = (held.get("holderIdentity"), held.get("renewTime"), held.get("leaseTransitions"))
        if key != self._observed:
            self._observed = key
            self._observed_at = self._monotonic()
