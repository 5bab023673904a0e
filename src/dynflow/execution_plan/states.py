"""Plan and step states as data: enums plus explicit transition tables."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from dynflow.errors import InvalidTransition


class PlanState(StrEnum):
    """Where a plan is in its life; ``stopped`` is final and ``PlanResult`` says how it ended."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    PLANNING = "planning"
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class PlanResult(StrEnum):
    """How a plan ended (``pending`` until it stops); ``warning``: a failed step was skipped;
    ``reverted``: the plan was reverted (``world.revert``, ``Rescue.REVERT``)."""

    PENDING = "pending"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CANCELLED = "cancelled"
    REVERTED = "reverted"


class StepState(StrEnum):
    """Where a step is; ``skipped``, ``cancelled`` and ``reverted`` are final, and so is
    ``success`` unless its plan is reverted (a run step then goes ``reverting`` while its
    action's ``revert`` runs, and ``reverted``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    SUSPENDED = "suspended"
    #: a failed attempt of ``run`` waits for its retry (``Step.next_attempt_at``)
    WAITING = "waiting"
    SKIPPING = "skipping"
    SKIPPED = "skipped"
    ERROR = "error"
    CANCELLED = "cancelled"
    #: the action's ``revert`` runs, or failed (``Step.error`` set: "revert failed")
    REVERTING = "reverting"
    REVERTED = "reverted"


class Phase(StrEnum):
    """The three phases of an action, each run as its own step; and ``revert``, which
    runs on the run step of the action it undoes (a worker's phase, never a step's)."""

    PLAN = "plan"
    RUN = "run"
    FINALIZE = "finalize"
    REVERT = "revert"


P = PlanState
PLAN_TRANSITIONS: Mapping[PlanState, frozenset[PlanState]] = {
    P.PENDING: frozenset({P.PLANNING, P.SCHEDULED, P.STOPPED}),
    P.SCHEDULED: frozenset({P.PLANNING, P.STOPPED}),
    P.PLANNING: frozenset({P.PLANNED, P.STOPPED}),
    P.PLANNED: frozenset({P.RUNNING, P.STOPPED}),
    P.RUNNING: frozenset({P.PAUSED, P.STOPPED}),
    P.PAUSED: frozenset({P.RUNNING, P.STOPPED}),
    #: only ``world.revert`` reopens a stopped plan: it waits, paused, for its executor
    P.STOPPED: frozenset({P.PAUSED}),
}

S = StepState
STEP_TRANSITIONS: Mapping[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.SKIPPING, S.CANCELLED, S.ERROR}),
    S.RUNNING: frozenset({S.SUCCESS, S.SUSPENDED, S.WAITING, S.ERROR, S.SKIPPED, S.CANCELLED}),
    S.WAITING: frozenset({S.RUNNING, S.ERROR}),
    S.SUSPENDED: frozenset({S.RUNNING, S.ERROR, S.CANCELLED}),
    S.ERROR: frozenset({S.PENDING, S.RUNNING, S.SKIPPING, S.SKIPPED}),
    S.SKIPPING: frozenset({S.SKIPPED, S.ERROR}),
    S.SUCCESS: frozenset({S.REVERTING}),
    S.SKIPPED: frozenset(),
    S.CANCELLED: frozenset(),
    #: skipping a failed revert gives it up: the plan goes on reverting the others
    S.REVERTING: frozenset({S.REVERTED, S.SKIPPED}),
    S.REVERTED: frozenset(),
}

#: Step states after which the step's flow position counts as done.
DONE_STEP_STATES = frozenset({S.SUCCESS, S.SKIPPED})


def check_plan_transition(current: PlanState, new: PlanState) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> new`` is allowed."""
    if current != new and new not in PLAN_TRANSITIONS[current]:
        raise InvalidTransition(f"execution plan cannot go from {current} to {new}")


def check_step_transition(current: StepState, new: StepState) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> new`` is allowed."""
    if current != new and new not in STEP_TRANSITIONS[current]:
        raise InvalidTransition(f"step cannot go from {current} to {new}")
