"""Tests of sluice.operator.rollout: the transition table row by row (a state and an
observation in, the phase, step, weight, children and events out), then what the rows leave
to the decision as a whole: analysis windows, actions, timers, the status round trip, and a
whole rollout replayed through status as a restarting operator would see it."""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

import pytest
from sluice.operator import rollout
from sluice.operator.analysis import Sample
from sluice.operator.rollout import (
    ABORTED,
    IDLE,
    PAUSED,
    PROGRESSING,
    ROLLED_BACK,
    SUCCEEDED,
    Observation,
    RolloutState,
    Stage,
    canary_replicas,
    decide,
)
from sluice.operator.spec import AnalysisSpec, CanarySpec, RolloutSpec

T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
CANARY = RolloutSpec(
    strategy="Canary",
    canary=CanarySpec(
        steps=(10, 50),
        step_seconds=30,
        analysis=AnalysisSpec(
            min_requests=20, max_error_rate=0.05, failure_limit=2, deadline_seconds=120
        ),
        ready_deadline_seconds=60,
    ),
)
PAUSING = dataclasses.replace(CANARY, paused=True)
ROLLING = dataclasses.replace(CANARY, strategy="RollingUpdate")

INF = math.inf
GOOD = Sample(25, 0, ((0.1, 25), (INF, 25)))
BAD = Sample(25, 5, ((0.1, 25), (INF, 25)))
FEW = Sample(5, 0, ((0.1, 5), (INF, 5)))

IDLE_A = RolloutState(stable_revision="A")
STARTING = RolloutState(PROGRESSING, 0, 0, "A", "B", T0)
STEP_1 = RolloutState(PROGRESSING, 0, 10, "A", "B", T0)
STEP_2 = RolloutState(PROGRESSING, 1, 50, "A", "B", T0)
RETRIED = dataclasses.replace(STEP_1, failures=1)
PROMOTING = RolloutState(PROGRESSING, 2, 50, "A", "B", T0)
PAUSED_AT_STEP = RolloutState(PAUSED, 0, 10, "A", "B", T0)
PAUSED_AT_START = RolloutState(PAUSED, 0, 0, "A", "B", T0)
ROLLED_BACK_B = RolloutState(ROLLED_BACK, 0, 0, "A", "B", T0, failed_revision="B")


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def seen(seconds: float = 0, spec: str = "B", stable: str = "A", **fields: Any) -> Observation:
    return Observation(now=at(seconds), spec_revision=spec, stable_revision=stable, **fields)


# (id, spec, state, observation, phase, step, canary weight, canary, stable takes the spec,
#  event reasons)
ROWS = [
    ("first-reconcile", CANARY, RolloutState(), seen(spec="A", stable=""),
     IDLE, 0, 0, False, True, ()),
    ("rolling-update", ROLLING, IDLE_A, seen(), IDLE, 0, 0, False, True, ()),
    ("unchanged", CANARY, IDLE_A, seen(spec="A"), IDLE, 0, 0, False, True, ()),
    ("new-revision", CANARY, IDLE_A, seen(), PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("after-success", CANARY, dataclasses.replace(PROMOTING, phase=SUCCEEDED, stable_revision="B"),
     seen(spec="C", stable="B"), PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("failed-not-retried", CANARY, ROLLED_BACK_B, seen(), ROLLED_BACK, 0, 0, False, False, ()),
    ("failed-then-third", CANARY, ROLLED_BACK_B, seen(spec="C"),
     PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("failed-then-back", CANARY, ROLLED_BACK_B, seen(spec="A"),
     ROLLED_BACK, 0, 0, False, True, ()),
    ("waiting-ready", CANARY, STARTING, seen(10), PROGRESSING, 0, 0, True, False, ()),
    ("canary-ready", CANARY, STARTING, seen(10, canary_ready=True),
     PROGRESSING, 0, 10, True, False, ("CanaryReady",)),
    ("ready-deadline", CANARY, STARTING, seen(60),
     ROLLED_BACK, 0, 0, False, False, ("RolledBack",)),
    ("step-too-early", CANARY, STEP_1, seen(10, window=GOOD), PROGRESSING, 0, 10, True, False, ()),
    ("bad-too-early", CANARY, STEP_1, seen(10, window=BAD), PROGRESSING, 0, 10, True, False, ()),
    ("step-passed", CANARY, STEP_1, seen(30, window=GOOD),
     PROGRESSING, 1, 50, True, False, ("AnalysisPassed", "StepAdvanced")),
    ("last-step-passed", CANARY, STEP_2, seen(30, window=GOOD),
     PROGRESSING, 2, 50, True, True, ("AnalysisPassed", "Promoting")),
    ("step-failed", CANARY, STEP_1, seen(30, window=BAD),
     PROGRESSING, 0, 10, True, False, ("AnalysisFailed",)),
    ("failure-limit", CANARY, RETRIED, seen(30, window=BAD),
     ROLLED_BACK, 0, 0, False, False, ("AnalysisFailed", "RolledBack")),
    ("few-requests", CANARY, STEP_1, seen(60, window=FEW), PROGRESSING, 0, 10, True, False, ()),
    ("request-deadline", CANARY, STEP_1, seen(120, window=FEW),
     PROGRESSING, 0, 10, True, False, ("AnalysisFailed",)),
    ("metrics-unknown", CANARY, STEP_1, seen(60), PROGRESSING, 0, 10, True, False, ()),
    ("metrics-deadline", CANARY, RETRIED, seen(120),
     ROLLED_BACK, 0, 0, False, False, ("AnalysisFailed", "RolledBack")),
    ("promoting", CANARY, PROMOTING, seen(stable="B"), PROGRESSING, 2, 50, True, True, ()),
    ("promoted", CANARY, PROMOTING, seen(stable="B", stable_rolled_out=True),
     SUCCEEDED, 2, 0, False, True, ("RolloutSucceeded",)),
    ("rolled-out-old", CANARY, PROMOTING, seen(stable="A", stable_rolled_out=True),
     PROGRESSING, 2, 50, True, True, ()),
    ("pause", PAUSING, STEP_1, seen(10, window=GOOD), PAUSED, 0, 10, True, False, ("Paused",)),
    ("pause-starting", PAUSING, STARTING, seen(10), PAUSED, 0, 0, True, False, ("Paused",)),
    ("held", PAUSING, PAUSED_AT_STEP, seen(9999, window=BAD), PAUSED, 0, 10, True, False, ()),
    ("held-not-ready", PAUSING, PAUSED_AT_START, seen(9999), PAUSED, 0, 0, True, False, ()),
    ("resume", CANARY, PAUSED_AT_STEP, seen(500), PROGRESSING, 0, 10, True, False, ("Resumed",)),
    ("resume-starting", CANARY, PAUSED_AT_START, seen(500),
     PROGRESSING, 0, 0, True, False, ("Resumed",)),
    ("no-pause-in-promotion", PAUSING, PROMOTING, seen(stable="B"),
     PROGRESSING, 2, 50, True, True, ()),
    ("abort", CANARY, STEP_2, seen(action="abort"), ABORTED, 1, 0, False, False, ("Aborted",)),
    ("abort-paused", PAUSING, PAUSED_AT_STEP, seen(action="abort"),
     ABORTED, 0, 0, False, False, ("Aborted",)),
    ("promote", CANARY, STEP_1, seen(action="promote"),
     PROGRESSING, 2, 10, True, True, ("Promoting",)),
    ("promote-starting", CANARY, STARTING, seen(action="promote"),
     PROGRESSING, 2, 0, True, True, ("Promoting",)),
    ("abort-promoting", CANARY, PROMOTING, seen(stable="B", action="abort"),
     PROGRESSING, 2, 50, True, True, ("ActionIgnored",)),
    ("promote-promoting", CANARY, PROMOTING, seen(stable="B", action="promote"),
     PROGRESSING, 2, 50, True, True, ("ActionIgnored",)),
    ("action-idle", CANARY, IDLE_A, seen(spec="A", action="promote"),
     IDLE, 0, 0, False, True, ("ActionIgnored",)),
    ("action-failed", CANARY, ROLLED_BACK_B, seen(action="abort"),
     ROLLED_BACK, 0, 0, False, False, ("ActionIgnored",)),
    ("action-unknown", CANARY, STEP_1, seen(action="rollback"),
     PROGRESSING, 0, 10, True, False, ("ActionIgnored",)),
    ("third-revision", CANARY, STEP_2, seen(spec="C"),
     PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("third-while-paused", PAUSING, PAUSED_AT_STEP, seen(spec="C"),
     PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("third-while-promoting", CANARY, PROMOTING, seen(spec="C", stable="B"),
     PROGRESSING, 0, 0, True, False, ("RolloutStarted",)),
    ("spec-back", CANARY, STEP_2, seen(spec="A"), ABORTED, 1, 0, False, True, ("Aborted",)),
    ("strategy-changed", ROLLING, STEP_2, seen(), ABORTED, 1, 0, False, True, ("Aborted",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "state", "obs", "phase", "step", "weight", "canary", "stable_takes", "reasons"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_transition(
    spec: RolloutSpec,
    state: RolloutState,
    obs: Observation,
    phase: str,
    step: int,
    weight: int,
    canary: bool,
    stable_takes: bool,
    reasons: tuple[str, ...],
) -> None:
    decision = decide(spec, state, obs)
    assert decision.state.phase == phase
    assert decision.state.step == step
    assert (decision.canary_weight, decision.state.canary_weight) == (weight, weight)
    assert decision.canary is canary
    assert decision.stable_takes_spec is stable_takes
    assert tuple(reason for _, reason, _ in decision.events) == reasons
    for event_type, _, message in decision.events:
        assert event_type in ("Normal", "Warning")
        assert message


def test_every_row_lands_where_its_phase_says() -> None:
    """Run every row again: the transition found for its stage and event set the phase the
    table names, and the stage after it is one the phase allows."""
    allowed = {
        PROGRESSING: {Stage.STARTING, Stage.STEP, Stage.PROMOTING},
        PAUSED: {Stage.PAUSED},
        SUCCEEDED: {Stage.IDLE},
        ROLLED_BACK: {Stage.IDLE},
        ABORTED: {Stage.IDLE},
        IDLE: {Stage.IDLE},
    }
    for _, spec, state, obs, *_ in ROWS:
        new = decide(spec, state, obs).state
        assert rollout.stage_of(new, spec.canary.steps) in allowed[new.phase]


def test_a_failed_step_starts_a_new_window_and_counts() -> None:
    decision = decide(CANARY, STEP_1, seen(30, window=BAD))
    assert decision.window_start
    assert decision.state.failures == 1
    assert decision.state.step_start_time == at(30)
    assert decision.state.analysis is not None
    assert decision.state.analysis.verdict == "Failed"
    assert decision.requeue_after == 30


def test_each_new_step_starts_a_window() -> None:
    assert decide(CANARY, STARTING, seen(5, canary_ready=True)).window_start
    assert decide(CANARY, STEP_1, seen(30, window=GOOD)).window_start
    assert decide(CANARY, PAUSED_AT_STEP, seen(500)).window_start
    assert not decide(CANARY, STEP_1, seen(10, window=GOOD)).window_start
    assert not decide(CANARY, STEP_2, seen(30, window=GOOD)).window_start  # promotion
    assert not decide(CANARY, PAUSED_AT_START, seen(500)).window_start


def test_a_rollback_remembers_the_revision_and_sends_all_traffic_to_stable() -> None:
    decision = decide(CANARY, RETRIED, seen(30, window=BAD))
    assert decision.state.failed_revision == "B"
    assert decision.state.failures == 2
    assert decision.state.stable_revision == "A"
    assert "rolled back revision B" in decision.state.message
    again = decide(CANARY, decision.state, seen(31))
    assert (again.state, again.events, again.canary) == (decision.state, (), False)


def test_the_failed_revision_is_forgotten_when_the_spec_returns_to_stable() -> None:
    back = decide(CANARY, ROLLED_BACK_B, seen(spec="A")).state
    assert back.failed_revision == ""
    retried = decide(CANARY, back, seen(spec="B"))
    assert retried.state.phase == PROGRESSING
    assert retried.state.canary_revision == "B"


def test_success_makes_the_canary_revision_stable() -> None:
    decision = decide(CANARY, PROMOTING, seen(stable="B", stable_rolled_out=True))
    assert decision.state.stable_revision == "B"
    assert decision.state.failed_revision == ""
    assert decision.requeue_after is None


def test_actions_are_acknowledged_and_removed() -> None:
    aborted = decide(CANARY, STEP_1, seen(action="abort"))
    assert aborted.remove_action
    assert aborted.state.last_action.startswith("abort")
    assert aborted.state.failed_revision == "B"
    promoted = decide(CANARY, STEP_1, seen(action="promote"))
    assert promoted.remove_action
    assert promoted.state.last_action.startswith("promote")
    ignored = decide(CANARY, IDLE_A, seen(spec="A", action="abort"))
    assert ignored.remove_action
    assert ignored.state.last_action == "abort: ignored, no rollout is in progress"
    assert ignored.events[0][2] == ignored.state.last_action


def test_an_action_with_a_new_revision_waits_for_the_rollout_it_meant() -> None:
    decision = decide(CANARY, IDLE_A, seen(action="promote"))
    assert decision.state.phase == PROGRESSING
    assert not decision.remove_action
    assert decision.requeue_after == 0.0
    promoted = decide(CANARY, decision.state, seen(1, action="promote"))
    assert promoted.remove_action
    assert rollout.stage_of(promoted.state, CANARY.canary.steps) is Stage.PROMOTING


def test_rolling_update_keeps_the_stable_revision_current() -> None:
    decision = decide(ROLLING, IDLE_A, seen(spec="C"))
    assert decision.state.stable_revision == "C"
    assert decision.events == ()
    ended = decide(ROLLING, STEP_2, seen(spec="B"))
    assert ended.state.stable_revision == "B"
    assert ended.state.failed_revision == ""


def test_a_step_records_its_figures_without_rewriting_them() -> None:
    first = decide(CANARY, STEP_1, seen(10, window=FEW)).state
    assert first.analysis is not None
    assert (first.analysis.verdict, first.analysis.requests) == ("Waiting", 5)
    assert first.analysis.p99_latency_seconds == pytest.approx(0.099)
    assert first.analysis_time == at(10)
    assert "5 of 20 requests" in first.message
    same = decide(CANARY, first, seen(15, window=FEW)).state
    assert same == first
    more = decide(CANARY, first, seen(16, window=GOOD)).state
    assert more.analysis is not None
    assert more.analysis.requests == 25
    assert more.analysis_time == at(16)


def test_unknown_metrics_keep_the_last_figures() -> None:
    first = decide(CANARY, STEP_1, seen(10, window=FEW)).state
    assert decide(CANARY, first, seen(20)).state == first


def test_requeue_follows_the_timers() -> None:
    assert decide(CANARY, STEP_1, seen(10, window=GOOD)).requeue_after == 20
    assert decide(CANARY, STEP_1, seen(40, window=FEW)).requeue_after == rollout.POLL_SECONDS
    assert decide(CANARY, STEP_1, seen(118, window=FEW)).requeue_after == 2
    assert decide(CANARY, STARTING, seen(57)).requeue_after == 3
    assert decide(CANARY, PROMOTING, seen(stable="B")).requeue_after == rollout.POLL_SECONDS
    assert decide(PAUSING, PAUSED_AT_STEP, seen(10)).requeue_after is None
    assert decide(CANARY, IDLE_A, seen(spec="A")).requeue_after is None


def test_deciding_twice_changes_nothing_the_second_time() -> None:
    for _, spec, state, obs, *_ in ROWS:
        first = decide(spec, state, obs)
        if first.remove_action:
            obs = dataclasses.replace(obs, action=None)
        if first.window_start:  # the new window has no figures yet
            obs = dataclasses.replace(obs, window=None)
        second = decide(spec, first.state, obs)
        if second.events:  # a row whose next step is another event (a pending pause)
            continue
        assert second.state == first.state
        assert not second.window_start


def test_a_step_without_a_start_time_starts_now() -> None:
    decision = decide(CANARY, dataclasses.replace(STEP_1, step_start_time=None), seen(7))
    assert decision.state.step_start_time == at(7)
    assert decision.window_start


@pytest.mark.parametrize(
    ("stable", "weight", "replicas"),
    [(10, 10, 1), (10, 15, 2), (10, 50, 5), (3, 10, 1), (3, 50, 2), (1, 99, 1), (4, 0, 1),
     (0, 50, 0), (7, 100, 7)],
)  # fmt: skip
def test_canary_replicas(stable: int, weight: int, replicas: int) -> None:
    assert canary_replicas(stable, weight) == replicas


def test_a_whole_rollout_through_status() -> None:
    """Replay a rollout as the operator would, every run starting from the stored status (so
    any run could be the first after a restart): the canary comes up, both steps pass, the
    stable Deployment takes the revision, the canary goes."""
    stored: dict[str, Any] = {}
    stable, rolled_out, seconds = "A", False, 0.0
    window: Sample | None = None
    reasons: list[str] = []
    for _ in range(40):
        obs = Observation(
            now=at(seconds),
            spec_revision="B",
            stable_revision=stable,
            stable_rolled_out=rolled_out,
            canary_ready=seconds >= 5,
            window=window,
        )
        decision = decide(CANARY, RolloutState.from_status(stored), obs)
        stored = decision.state.to_status()
        reasons += [reason for _, reason, _ in decision.events]
        if decision.state.phase == SUCCEEDED:
            break
        if decision.stable_takes_spec:
            stable, rolled_out = "B", seconds > 100
        window = Sample() if decision.window_start else window and GOOD
        seconds += decision.requeue_after or 1.0
    assert reasons == [
        "RolloutStarted", "CanaryReady", "AnalysisPassed", "StepAdvanced", "AnalysisPassed",
        "Promoting", "RolloutSucceeded",
    ]  # fmt: skip
    assert stored["phase"] == SUCCEEDED
    assert stored["stableRevision"] == "B"
    assert stored["canaryWeight"] == 0
