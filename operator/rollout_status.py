"""The state of a canary rollout as ``status.rollout`` holds it, and its phases.

Written and read by ``rollout.py`` (the state machine, which re-exports what is here) and by
``reconcile.py``, which stores ``RolloutState.to_patch`` in status and reads it back with
``RolloutState.from_status``, so an operator that restarts resumes where the last one left
off. The keys and phases are those of the CRD's ``status.rollout`` schema. Reading tolerates
whatever is there (a status written by an older operator, or by hand): a missing or malformed
field takes its default. Times are RFC 3339 in UTC to the second, as status stores them.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .analysis import FAILED, PASSED, WAITING, Verdict, VerdictKind

Phase = Literal["", "Progressing", "Paused", "Succeeded", "RolledBack", "Aborted"]
IDLE: Phase = ""  # no rollout has run: status shows no phase
PROGRESSING: Phase = "Progressing"
PAUSED: Phase = "Paused"
SUCCEEDED: Phase = "Succeeded"
ROLLED_BACK: Phase = "RolledBack"
ABORTED: Phase = "Aborted"
PHASES: tuple[Phase, ...] = (IDLE, PROGRESSING, PAUSED, SUCCEEDED, ROLLED_BACK, ABORTED)
VERDICTS: tuple[VerdictKind, ...] = (PASSED, FAILED, WAITING)


@dataclass(frozen=True)
class RolloutState:
    """The rollout in progress or last finished, as ``status.rollout`` holds it.

    ``stable_revision`` is the revision the stable Deployment serves (it follows the spec under
    strategy RollingUpdate); ``failed_revision`` the one last rolled back or aborted, not tried
    again until the spec changes; ``analysis`` the latest verdict on the current step and
    ``analysis_time`` when its figures were taken.
    """

    phase: Phase = IDLE
    step: int = 0
    canary_weight: int = 0
    stable_revision: str = ""
    canary_revision: str = ""
    step_start_time: datetime.datetime | None = None
    failures: int = 0
    failed_revision: str = ""
    message: str = ""
    last_action: str = ""
    analysis: Verdict | None = None
    analysis_time: datetime.datetime | None = None

    def to_status(self) -> dict[str, Any]:
        """The state as ``status.rollout``: unset fields are left out, so the dict equals what
        the API server stores from it. Write it with ``to_patch``, which removes stale keys."""
        status: dict[str, Any] = {
            "phase": self.phase,
            "step": self.step,
            "canaryWeight": self.canary_weight,
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "stepStartTime": _format_time(self.step_start_time),
            "failures": self.failures,
            "failedRevision": self.failed_revision,
            "message": self.message,
            "lastAction": self.last_action,
        }
        if self.analysis is not None:
            status["analysis"] = {
                "requests": self.analysis.requests,
                "errorRate": self.analysis.error_rate,
                "p99LatencySeconds": self.analysis.p99_latency_seconds,
                "verdict": self.analysis.verdict,
                "time": _format_time(self.analysis_time),
            }
            status["analysis"] = {k: v for k, v in status["analysis"].items() if v is not None}
        return {k: v for k, v in status.items() if v is not None and v != ""}

    def to_patch(self, old: Mapping[str, Any] | None) -> dict[str, Any]:
        """``to_status`` as a JSON merge patch over the stored ``old`` form: a key that ``old``
        has and the state no longer has is set to None, which removes it."""
        return _merge_patch(old or {}, self.to_status())

    @classmethod
    def from_status(cls, raw: Any) -> RolloutState:
        """The state in ``status.rollout``; a missing or malformed field (a status written by
        an older operator, or by hand) takes its default."""
        if not isinstance(raw, Mapping):
            return cls()
        phase = raw.get("phase")
        analysis = raw.get("analysis")
        return cls(
            phase=phase if phase in PHASES else IDLE,
            step=_count(raw.get("step")),
            canary_weight=min(_count(raw.get("canaryWeight")), 100),
            stable_revision=_text(raw.get("stableRevision")),
            canary_revision=_text(raw.get("canaryRevision")),
            step_start_time=_parse_time(raw.get("stepStartTime")),
            failures=_count(raw.get("failures")),
            failed_revision=_text(raw.get("failedRevision")),
            message=_text(raw.get("message")),
            last_action=_text(raw.get("lastAction")),
            analysis=_parse_verdict(analysis),
            analysis_time=(
                _parse_time(analysis.get("time")) if isinstance(analysis, Mapping) else None
            ),
        )


def _merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = _merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def _format_time(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def _parse_verdict(raw: Any) -> Verdict | None:
    if not isinstance(raw, Mapping) or raw.get("verdict") not in VERDICTS:
        return None
    p99 = raw.get("p99LatencySeconds")
    return Verdict(
        verdict=raw["verdict"],
        requests=_count(raw.get("requests")),
        error_rate=_number(raw.get("errorRate")),
        p99_latency_seconds=None if p99 is None else _number(p99),
        reason="",
    )


def _count(value: Any) -> int:
    """A non-negative integer field; anything else counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
