"""Tests of sluice.operator.rollout_status: the rollout state as status.rollout holds it, its
round trip, the merge patch that writes it, and what a status not written by this operator
reads as."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from sluice.operator.analysis import Verdict
from sluice.operator.rollout_status import PHASES, PROGRESSING, ROLLED_BACK, RolloutState

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
ROLLED_BACK_B = RolloutState(
    phase=ROLLED_BACK,
    step=1,
    stable_revision="A",
    canary_revision="B",
    step_start_time=T0,
    failures=2,
    failed_revision="B",
    message="rolled back revision B",
    last_action="abort: ignored, no rollout is in progress",
    analysis=Verdict("Failed", 25, 0.2, 0.099, ""),
    analysis_time=T0 + datetime.timedelta(seconds=30),
)


def test_every_field_has_its_key() -> None:
    assert ROLLED_BACK_B.to_status() == {
        "phase": "RolledBack",
        "step": 1,
        "canaryWeight": 0,
        "stableRevision": "A",
        "canaryRevision": "B",
        "stepStartTime": "2030-01-01T00:00:00Z",
        "failures": 2,
        "failedRevision": "B",
        "message": "rolled back revision B",
        "lastAction": "abort: ignored, no rollout is in progress",
        "analysis": {
            "requests": 25,
            "errorRate": 0.2,
            "p99LatencySeconds": 0.099,
            "verdict": "Failed",
            "time": "2030-01-01T00:00:30Z",
        },
    }
    assert RolloutState.from_status(ROLLED_BACK_B.to_status()) == ROLLED_BACK_B


def test_status_leaves_out_what_is_unset() -> None:
    assert RolloutState().to_status() == {"step": 0, "canaryWeight": 0, "failures": 0}
    assert RolloutState.from_status(RolloutState().to_status()) == RolloutState()
    unknown = RolloutState(analysis=Verdict("Waiting", 0, 0.0, None, ""))
    assert unknown.to_status()["analysis"] == {
        "requests": 0,
        "errorRate": 0.0,
        "verdict": "Waiting",
    }
    assert RolloutState.from_status(unknown.to_status()) == unknown


def test_the_patch_removes_stale_keys() -> None:
    old = ROLLED_BACK_B.to_status()
    new = RolloutState(PROGRESSING, 0, 0, "A", "C", T0 + datetime.timedelta(hours=1))
    patch = new.to_patch(old)
    assert patch["analysis"] is None
    assert patch["failedRevision"] is None
    assert patch["canaryRevision"] == "C"
    assert {k: v for k, v in patch.items() if v is not None} == new.to_status()
    assert new.to_patch(None) == new.to_status()


def test_the_patch_reaches_into_the_analysis() -> None:
    old = ROLLED_BACK_B.to_status()
    new = RolloutState(analysis=Verdict("Waiting", 3, 0.0, None, ""), analysis_time=T0)
    patch = new.to_patch(old)["analysis"]
    assert patch["p99LatencySeconds"] is None
    assert patch["verdict"] == "Waiting"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "Progressing",
        {"phase": "Exploding", "step": "two", "canaryWeight": -3, "failures": True},
        {"stepStartTime": "yesterday", "analysis": {"verdict": "Maybe"}, "message": 7},
        {"analysis": "Passed", "canaryWeight": 400, "stableRevision": ["A"]},
    ],
)
def test_garbage_reads_as_defaults(raw: Any) -> None:
    state = RolloutState.from_status(raw)
    assert state.phase in PHASES
    assert 0 <= state.canary_weight <= 100
    assert state.step >= 0
    assert state.failures == 0
    assert state.step_start_time is None
    assert state.analysis is None
    assert isinstance(state.message, str)
    assert isinstance(state.stable_revision, str)


def test_times_with_offsets_are_read_as_utc() -> None:
    state = RolloutState.from_status({"stepStartTime": "2030-01-01T01:00:00+01:00"})
    assert state.step_start_time == T0
    naive = RolloutState.from_status({"stepStartTime": "2030-01-01T00:00:00"})
    assert naive.step_start_time == T0
