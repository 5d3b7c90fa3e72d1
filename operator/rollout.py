"""The canary rollout: a state machine from (spec, state, observation) to a decision.

Called by ``reconcile.py`` once per run of an InferenceService. Pure: no I/O and no clock (the
observation carries ``now``), so a run can be replayed in a test. The state lives in
``status.rollout`` (``rollout_status.RolloutState``, re-exported here), so an operator that
restarts resumes at the same step; the reconciler reads it, observes the world, calls
``decide``, acts on the ``Decision`` (which Deployments to render, the canary's weight, which
events to post, whether to remove the rollout-action annotation) and writes the new state back.

The machine is a transition table (``TRANSITIONS``): a stage of the rollout and an event that
the observation shows lead to the phase written to status, an effect on the state, and the
events posted. Each run detects at most one event (``_detect``, in priority order), so a run
moves the rollout one transition and the next run, requeued soon, looks again. docs/rollout.md
describes the states, the transitions and the analysis for users.

Stages are finer than the status phases the CRD allows: a rollout waiting for its canary to be
ready, moving through its steps, or being promoted is in phase Progressing, told apart by
``canaryWeight`` 0 (no traffic before the canary is ready, and every step takes at least 1%)
and by ``step`` one past the last step (promotion).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from .analysis import FAILED, PASSED, WAITING, Sample, Verdict, judge

# The state and its phases are part of this module's interface.
from .rollout_status import ABORTED as ABORTED
from .rollout_status import IDLE as IDLE
from .rollout_status import PAUSED as PAUSED
from .rollout_status import PHASES as PHASES
from .rollout_status import PROGRESSING as PROGRESSING
from .rollout_status import ROLLED_BACK as ROLLED_BACK
from .rollout_status import SUCCEEDED as SUCCEEDED
from .rollout_status import Phase as Phase
from .rollout_status import RolloutState as RolloutState
from .spec import RolloutSpec

# The values of the rollout-action annotation (labels.ANNOTATION_ROLLOUT_ACTION).
PROMOTE = "promote"
ABORT = "abort"

# How often to look again while waiting on something no watch event announces (requests
# reaching the canary) or that is cheap to check (readiness, the stable Deployment's rollout).
POLL_SECONDS = 5.0

EventType = Literal["Normal", "Warning"]


class Stage(StrEnum):
    """Where a rollout is, as the transition table sees it."""

    IDLE = "Idle"  # no rollout in progress: none yet, or the last one ended
    STARTING = "Starting"  # the canary exists and is not ready yet: no traffic
    STEP = "Step"  # the canary takes a step's weight and is judged
    PROMOTING = "Promoting"  # the stable Deployment rolls out the canary's revision
    PAUSED = "Paused"  # held at its step by spec.rollout.paused


class Event(StrEnum):
    """What an observation can show, relative to the state."""

    ADOPT = "Adopt"  # the stable Deployment takes the spec as it is (RollingUpdate, first run)
    NEW_REVISION = "NewRevision"  # the spec has a revision neither stable nor failed nor rolling
    REVERTED = "Reverted"  # the spec returned to the stable revision during a rollout
    STRATEGY_CHANGED = "StrategyChanged"  # strategy RollingUpdate during a rollout
    PROMOTE = "Promote"
    ABORT = "Abort"
    UNKNOWN_ACTION = "UnknownAction"
    PAUSE = "Pause"
    RESUME = "Resume"
    CANARY_READY = "CanaryReady"
    READY_TIMEOUT = "ReadyTimeout"
    STEP_PASSED = "StepPassed"
    LAST_STEP_PASSED = "LastStepPassed"
    STEP_FAILED = "StepFailed"
    FAILURE_LIMIT = "FailureLimit"
    STABLE_ROLLED_OUT = "StableRolledOut"


ACTIONS = (Event.PROMOTE, Event.ABORT, Event.UNKNOWN_ACTION)


@dataclass(frozen=True)
class Observation:
    """What the reconciler saw this run.

    ``spec_revision``: the revision of the spec's pod-shaping fields (``builders.spec_hash``).
    ``stable_revision``: the stable Deployment's live revision, "" while it does not exist.
    ``stable_rolled_out``: it runs ``spec_revision`` on all its replicas, ready.
    ``canary_ready``: the canary Deployment's replicas are all ready.
    ``window``: the canary's traffic since the current analysis window began, None when
    unknown (router pods unreadable, or no baseline yet).
    ``action``: the rollout-action annotation's value, None when absent; a value other than
    ``PROMOTE`` and ``ABORT`` is acknowledged as ignored.
    """

    now: datetime.datetime
    spec_revision: str
    stable_revision: str = ""
    stable_rolled_out: bool = False
    canary_ready: bool = False
    window: Sample | None = None
    action: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the reconciler does this run.

    ``canary``: a canary Deployment with the spec's pods should exist, taking ``canary_weight``
    percent of the main model's traffic. ``stable_takes_spec``: render the stable Deployment
    with the spec's pods (False: keep its live pod template). ``window_start``: take a new
    baseline of the canary's counters now (``router_metrics.Baselines``). ``remove_action``:
    the annotation was acted on (or ignored) and is to be removed. ``events``: (type, reason,
    message) to post. ``requeue_after``: seconds until the state should be looked at again.
    """

    state: RolloutState
    canary: bool
    canary_weight: int
    stable_takes_spec: bool
    window_start: bool = False
    remove_action: bool = False
    events: tuple[tuple[EventType, str, str], ...] = ()
    requeue_after: float | None = None


@dataclass(frozen=True)
class _Context:
    """One run's inputs, handed to the effects."""

    rollout: RolloutSpec
    state: RolloutState
    obs: Observation
    stage: Stage
    verdict: Verdict | None = None

    @property
    def now(self) -> datetime.datetime:
        """``obs.now`` to the second, as status stores times."""
        return self.obs.now.replace(microsecond=0)

    @property
    def steps(self) -> tuple[int, ...]:
        return self.rollout.canary.steps


Effect = Callable[[_Context], RolloutState]


@dataclass(frozen=True)
class Transition:
    """One row of the table: the phase after (None: unchanged), the effect on the state, and
    the events posted, as (type, reason)."""

    phase: Phase | None
    effect: Effect
    events: tuple[tuple[EventType, str], ...] = ()


def decide(rollout: RolloutSpec, state: RolloutState, obs: Observation) -> Decision:
    """The next state of the rollout and what to do about it."""
    ctx = _Context(rollout, state, obs, stage_of(state, rollout.canary.steps))
    events: tuple[tuple[EventType, str, str], ...] = ()
    consumed = False
    detected = _detect(ctx)
    if detected is None:
        new = _hold(ctx)
    else:
        event, verdict = detected
        ctx = replace(ctx, verdict=verdict)
        row = TRANSITIONS[(ctx.stage, event)]
        new = row.effect(ctx)
        if row.phase is not None:
            new = replace(new, phase=row.phase)
        events = tuple((kind, reason, _note(reason, ctx, new)) for kind, reason in row.events)
        consumed = event in ACTIONS
    stage = stage_of(new, rollout.canary.steps)
    in_progress = stage is not Stage.IDLE
    window_start = stage is Stage.STEP and (
        ctx.stage is not Stage.STEP
        or (new.step, new.step_start_time) != (state.step, state.step_start_time)
    )
    requeue = _requeue(rollout, new, stage, obs.now)
    if obs.action is not None and not consumed and in_progress:
        requeue = 0.0  # a rollout just began with an action waiting for it
    return Decision(
        state=new,
        canary=in_progress,
        canary_weight=new.canary_weight if in_progress else 0,
        stable_takes_spec=stage is Stage.PROMOTING or obs.spec_revision == new.stable_revision,
        window_start=window_start,
        remove_action=consumed,
        events=events,
        requeue_after=requeue,
    )


def stage_of(state: RolloutState, steps: tuple[int, ...]) -> Stage:
    """The stage a state is in, given the spec's steps."""
    if state.phase == PAUSED:
        return Stage.PAUSED
    if state.phase != PROGRESSING:
        return Stage.IDLE
    if state.step >= len(steps):
        return Stage.PROMOTING
    return Stage.STARTING if state.canary_weight == 0 else Stage.STEP


def canary_replicas(stable_replicas: int, weight: int) -> int:
    """The canary's replicas for ``weight`` percent of the traffic the stable Deployment's
    ``stable_replicas`` carry: its share rounded up, at least 1 (a canary must exist to become
    ready), and none when the stable Deployment has none. The canary never grows past its
    share; during promotion it keeps the last step's weight, so its size."""
    if stable_replicas <= 0:
        return 0
    return max(1, -(-stable_replicas * max(0, min(weight, 100)) // 100))


# --- detection: which event, if any, this run shows -------------------------------------------


def _detect(ctx: _Context) -> tuple[Event, Verdict | None] | None:
    """The one event the observation shows, highest priority first: spec and strategy
    changes, then a manual action, then the stage's own progress."""
    rollout, state, obs, stage = ctx.rollout, ctx.state, ctx.obs, ctx.stage
    spec = obs.spec_revision
    if stage is Stage.IDLE:
        if rollout.strategy == "RollingUpdate" or not obs.stable_revision:
            return (Event.ADOPT, None) if spec != state.stable_revision else _action(obs)
        if spec not in (_stable(ctx), state.failed_revision):
            return Event.NEW_REVISION, None
        return _action(obs)
    if rollout.strategy == "RollingUpdate":
        return Event.STRATEGY_CHANGED, None
    if spec != state.canary_revision:
        return (Event.REVERTED if spec == state.stable_revision else Event.NEW_REVISION), None
    action = _action(obs)
    if action is not None:
        return action
    if stage is Stage.PROMOTING:
        done = obs.stable_rolled_out and obs.stable_revision == state.canary_revision
        return (Event.STABLE_ROLLED_OUT, None) if done else None
    if stage is Stage.PAUSED:
        return None if rollout.paused else (Event.RESUME, None)
    if rollout.paused:
        return Event.PAUSE, None
    if stage is Stage.STARTING:
        if obs.canary_ready:
            return Event.CANARY_READY, None
        waited = _elapsed(ctx)
        timed_out = waited >= rollout.canary.ready_deadline_seconds
        return (Event.READY_TIMEOUT, None) if timed_out else None
    return _judge_step(ctx)


def _action(obs: Observation) -> tuple[Event, None] | None:
    if obs.action is None:
        return None
    events = {PROMOTE: Event.PROMOTE, ABORT: Event.ABORT}
    return events.get(obs.action, Event.UNKNOWN_ACTION), None


def _judge_step(ctx: _Context) -> tuple[Event, Verdict] | None:
    """A step's verdict once it is due: after ``stepSeconds`` with ``minRequests`` seen, or at
    the deadline without them (a failure)."""
    canary = ctx.rollout.canary
    analysis = canary.analysis
    verdict = _provisional(ctx)
    elapsed = _elapsed(ctx)
    if verdict.verdict == WAITING:
        if elapsed < analysis.deadline_seconds:
            return None
        reason = f"{verdict.reason}, {analysis.deadline_seconds}s after the step began"
        verdict = replace(verdict, verdict=FAILED, reason=reason)
    elif elapsed < canary.step_seconds:
        return None
    if verdict.verdict == PASSED:
        last = ctx.state.step >= len(canary.steps) - 1
        return (Event.LAST_STEP_PASSED if last else Event.STEP_PASSED), verdict
    limit_reached = ctx.state.failures + 1 >= analysis.failure_limit
    return (Event.FAILURE_LIMIT if limit_reached else Event.STEP_FAILED), verdict


def _provisional(ctx: _Context) -> Verdict:
    """The verdict on the window as it stands, before the step's time is considered."""
    window = ctx.obs.window
    if window is not None:
        return judge(ctx.rollout.canary.analysis, window)
    held = ctx.state.analysis
    reason = "the canary's metrics are unavailable"
    if held is None:
        return Verdict(WAITING, 0, 0.0, None, reason)
    return replace(held, verdict=WAITING, reason=reason)


# --- effects: the new state for each transition -----------------------------------------------


def _adopt(ctx: _Context) -> RolloutState:
    revision = ctx.obs.spec_revision
    return replace(
        ctx.state,
        stable_revision=revision,
        failed_revision="",
        message=f"the stable Deployment takes revision {revision}",
    )


def _start(ctx: _Context) -> RolloutState:
    spec, stable = ctx.obs.spec_revision, _stable(ctx)
    replaced = f", replacing {ctx.state.canary_revision}" if ctx.stage is not Stage.IDLE else ""
    return RolloutState(
        stable_revision=stable,
        canary_revision=spec,
        step_start_time=ctx.now,
        failed_revision=ctx.state.failed_revision,
        message=f"rolling out revision {spec} beside stable {stable}{replaced}: "
        "waiting for the canary to be ready",
        last_action=ctx.state.last_action,
    )


def _enter_first_step(ctx: _Context) -> RolloutState:
    state = replace(ctx.state, step=0, canary_weight=ctx.steps[0], step_start_time=ctx.now)
    return replace(state, analysis=None, analysis_time=None, message=_at_step(ctx, state))


def _next_step(ctx: _Context) -> RolloutState:
    step = ctx.state.step + 1
    state = replace(ctx.state, step=step, canary_weight=ctx.steps[step], step_start_time=ctx.now)
    return replace(state, analysis=None, analysis_time=None, message=_at_step(ctx, state))


def _retry(ctx: _Context) -> RolloutState:
    failures = ctx.state.failures + 1
    limit = ctx.rollout.canary.analysis.failure_limit
    state = replace(ctx.state, failures=failures, step_start_time=ctx.now)
    message = f"{_at_step(ctx, state)}: failure {failures} of {limit}, a new window begins"
    return _record(replace(state, message=message), ctx)


def _promote(ctx: _Context) -> RolloutState:
    state = replace(
        ctx.state,
        step=len(ctx.steps),
        step_start_time=ctx.now,
        message=f"promoting revision {ctx.state.canary_revision}: the stable Deployment rolls "
        f"it out while the canary keeps {ctx.state.canary_weight}% of the traffic",
    )
    return _record(state, ctx) if ctx.verdict is not None else state


def _promote_now(ctx: _Context) -> RolloutState:
    return replace(_promote(ctx), last_action=f"{PROMOTE}: promoting without further analysis")


def _succeed(ctx: _Context) -> RolloutState:
    revision = ctx.state.canary_revision
    return replace(
        ctx.state,
        canary_weight=0,
        stable_revision=revision,
        failed_revision="",
        message=f"revision {revision} is stable",
    )


def _roll_back(ctx: _Context) -> RolloutState:
    revision = ctx.state.canary_revision
    if ctx.verdict is None:
        waited = ctx.rollout.canary.ready_deadline_seconds
        why = f"the canary was not ready within {waited}s"
        state = ctx.state
    else:
        why = f"{ctx.state.failures + 1} failed analyses: {ctx.verdict.reason}"
        state = _record(replace(ctx.state, failures=ctx.state.failures + 1), ctx)
    return replace(
        state,
        canary_weight=0,
        failed_revision=revision,
        message=f"rolled back revision {revision}: {why}; it is not tried again until the "
        "spec changes",
    )


def _abort(ctx: _Context) -> RolloutState:
    revision = ctx.state.canary_revision
    return replace(
        ctx.state,
        canary_weight=0,
        failed_revision=revision,
        message=f"aborted revision {revision}: all traffic is back on stable "
        f"{ctx.state.stable_revision}",
        last_action=f"{ABORT}: aborted revision {revision}",
    )


def _revert(ctx: _Context) -> RolloutState:
    return replace(
        ctx.state,
        canary_weight=0,
        failed_revision="",
        message=f"the spec returned to stable revision {ctx.state.stable_revision}: "
        f"revision {ctx.state.canary_revision} is no longer rolled out",
    )


def _end_for_rolling_update(ctx: _Context) -> RolloutState:
    revision = ctx.obs.spec_revision
    return replace(
        ctx.state,
        canary_weight=0,
        stable_revision=revision,
        failed_revision="",
        message=f"strategy RollingUpdate: the canary is removed and the stable Deployment "
        f"takes revision {revision} by its own rolling update",
    )


def _pause(ctx: _Context) -> RolloutState:
    return replace(ctx.state, message=f"paused at {_position(ctx, ctx.state)}")


def _resume(ctx: _Context) -> RolloutState:
    state = replace(ctx.state, step_start_time=ctx.now)
    if state.canary_weight == 0:
        return replace(state, message="resumed: waiting for the canary to be ready")
    return replace(state, message=f"resumed at {_at_step(ctx, state)}: a new window begins")


def _ignore(ctx: _Context) -> RolloutState:
    action = ctx.obs.action
    if ctx.stage is Stage.IDLE:
        why = "no rollout is in progress"
    elif action not in (PROMOTE, ABORT):
        why = f"the actions are {PROMOTE} and {ABORT}"
    elif action == PROMOTE:
        why = "the promotion is already under way"
    else:
        why = "the promotion is under way; set the spec back to the stable revision to revert"
    return replace(ctx.state, last_action=f"{action}: ignored, {why}")


# --- the table --------------------------------------------------------------------------------

_RUNNING = (Stage.STARTING, Stage.STEP, Stage.PROMOTING, Stage.PAUSED)
_ABORTABLE = (Stage.STARTING, Stage.STEP, Stage.PAUSED)
_IGNORED = Transition(None, _ignore, (("Warning", "ActionIgnored"),))

_ROWS: tuple[tuple[tuple[Stage, ...], Event, Transition], ...] = (
    ((Stage.IDLE,), Event.ADOPT, Transition(None, _adopt)),
    ((Stage.IDLE, *_RUNNING), Event.NEW_REVISION,
     Transition(PROGRESSING, _start, (("Normal", "RolloutStarted"),))),
    ((Stage.IDLE, *_RUNNING), Event.UNKNOWN_ACTION, _IGNORED),
    ((Stage.IDLE, Stage.PROMOTING), Event.PROMOTE, _IGNORED),
    ((Stage.IDLE, Stage.PROMOTING), Event.ABORT, _IGNORED),
    (_RUNNING, Event.STRATEGY_CHANGED,
     Transition(ABORTED, _end_for_rolling_update, (("Warning", "Aborted"),))),
    (_RUNNING, Event.REVERTED, Transition(ABORTED, _revert, (("Warning", "Aborted"),))),
    (_ABORTABLE, Event.ABORT, Transition(ABORTED, _abort, (("Warning", "Aborted"),))),
    (_ABORTABLE, Event.PROMOTE,
     Transition(PROGRESSING, _promote_now, (("Normal", "Promoting"),))),
    ((Stage.STARTING, Stage.STEP), Event.PAUSE,
     Transition(PAUSED, _pause, (("Normal", "Paused"),))),
    ((Stage.PAUSED,), Event.RESUME, Transition(PROGRESSING, _resume, (("Normal", "Resumed"),))),
    ((Stage.STARTING,), Event.CANARY_READY,
     Transition(PROGRESSING, _enter_first_step, (("Normal", "CanaryReady"),))),
    ((Stage.STARTING,), Event.READY_TIMEOUT,
     Transition(ROLLED_BACK, _roll_back, (("Warning", "RolledBack"),))),
    ((Stage.STEP,), Event.STEP_PASSED,
     Transition(PROGRESSING, _next_step,
                (("Normal", "AnalysisPassed"), ("Normal", "StepAdvanced")))),
    ((Stage.STEP,), Event.LAST_STEP_PASSED,
     Transition(PROGRESSING, _promote, (("Normal", "AnalysisPassed"), ("Normal", "Promoting")))),
    ((Stage.STEP,), Event.STEP_FAILED,
     Transition(PROGRESSING, _retry, (("Warning", "AnalysisFailed"),))),
    ((Stage.STEP,), Event.FAILURE_LIMIT,
     Transition(ROLLED_BACK, _roll_back,
                (("Warning", "AnalysisFailed"), ("Warning", "RolledBack")))),
    ((Stage.PROMOTING,), Event.STABLE_ROLLED_OUT,
     Transition(SUCCEEDED, _succeed, (("Normal", "RolloutSucceeded"),))),
)  # fmt: skip

# (stage, event) -> transition; an event that _detect can report in a stage has a row here.
TRANSITIONS: Mapping[tuple[Stage, Event], Transition] = {
    (stage, event): transition for stages, event, transition in _ROWS for stage in stages
}


# --- holding: no event, the state only takes in what was observed ----------------------------


def _hold(ctx: _Context) -> RolloutState:
    """The state when nothing moves the rollout: a step records its figures so far; with no
    rollout in progress the state learns the stable revision it lacks (a status written by
    an older operator) and forgets the failed revision once the spec is back at stable."""
    state = ctx.state
    if ctx.stage is Stage.IDLE:
        stable = _stable(ctx)
        failed = "" if ctx.obs.spec_revision == stable else state.failed_revision
        return replace(state, stable_revision=stable, failed_revision=failed)
    if state.step_start_time is None and ctx.stage in (Stage.STARTING, Stage.STEP):
        state = replace(state, step_start_time=ctx.now)  # a hand-edited status: start now
    if ctx.stage is Stage.STEP and ctx.obs.window is not None:
        verdict = _provisional(ctx)
        waiting = replace(verdict, verdict=WAITING)
        state = _record(state, replace(ctx, verdict=waiting))
        state = replace(state, message=f"{_at_step(ctx, state)}: waiting: {verdict.reason}")
    return state


def _record(state: RolloutState, ctx: _Context) -> RolloutState:
    """``state`` with the context's verdict as its analysis; the time is kept while the
    figures are the same, so an unchanged world writes an unchanged status."""
    verdict = ctx.verdict
    if verdict is None:
        return state
    held = state.analysis
    same = held is not None and _figures(held) == _figures(verdict)
    time = state.analysis_time if same and state.analysis_time else ctx.now
    return replace(state, analysis=replace(verdict, reason=""), analysis_time=time)


def _figures(verdict: Verdict) -> tuple[object, ...]:
    return (verdict.verdict, verdict.requests, verdict.error_rate, verdict.p99_latency_seconds)


# --- helpers ----------------------------------------------------------------------------------


def _stable(ctx: _Context) -> str:
    """The stable revision: the state's, or the live Deployment's when the state has none."""
    return ctx.state.stable_revision or ctx.obs.stable_revision


def _elapsed(ctx: _Context) -> float:
    """Seconds since the current step (or the wait for readiness) began."""
    started = ctx.state.step_start_time or ctx.obs.now
    return (ctx.obs.now - started).total_seconds()


def _requeue(
    rollout: RolloutSpec, state: RolloutState, stage: Stage, now: datetime.datetime
) -> float | None:
    """When to look again: at the end of a step's least time, at a deadline, or a poll while
    waiting for requests, readiness or the stable Deployment."""
    if stage in (Stage.IDLE, Stage.PAUSED):
        return None
    if stage is Stage.PROMOTING:
        return POLL_SECONDS
    canary = rollout.canary
    started = state.step_start_time or now
    elapsed = (now - started).total_seconds()
    if stage is Stage.STARTING:
        return max(0.0, min(POLL_SECONDS, canary.ready_deadline_seconds - elapsed))
    if elapsed < canary.step_seconds:
        return canary.step_seconds - elapsed
    return max(0.0, min(POLL_SECONDS, canary.analysis.deadline_seconds - elapsed))


def _position(ctx: _Context, state: RolloutState) -> str:
    if state.canary_weight == 0:
        return "the start, before the canary is ready"
    return _at_step(ctx, state)


def _at_step(ctx: _Context, state: RolloutState) -> str:
    return f"step {state.step + 1} of {len(ctx.steps)}, {state.canary_weight}% of the traffic"


def _note(reason: str, ctx: _Context, new: RolloutState) -> str:
    """An event's message: the verdict for the analysis' own events, the acknowledgement for
    an ignored action, else the new state's message."""
    if reason in ("AnalysisPassed", "AnalysisFailed") and ctx.verdict is not None:
        return f"step {ctx.state.step + 1}: {ctx.verdict.reason}"
    if reason == "ActionIgnored":
        return new.last_action
    return new.message
