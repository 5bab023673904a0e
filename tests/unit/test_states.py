"""Plan and step state machines: the allowed moves, and nothing else."""

from __future__ import annotations

import itertools

import pytest

from dynflow import InvalidTransition
from dynflow.errors import DynflowError
from dynflow.execution_plan.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
    check_step_transition,
)

# The contract, written out independently of the implementation's tables.
ALLOWED_PLAN_MOVES = {
    ("pending", "planning"),
    ("pending", "scheduled"),
    ("pending", "stopped"),
    ("scheduled", "planning"),
    ("scheduled", "stopped"),
    ("planning", "planned"),
    ("planning", "stopped"),
    ("planned", "running"),
    ("planned", "stopped"),
    ("running", "paused"),
    ("running", "stopped"),
    ("paused", "running"),
    ("paused", "stopped"),
    ("stopped", "paused"),  # world.revert reopens a stopped plan
}

ALLOWED_STEP_MOVES = {
    ("pending", "running"),
    ("pending", "skipped"),
    ("pending", "skipping"),
    ("pending", "cancelled"),
    ("pending", "error"),
    ("running", "success"),
    ("running", "suspended"),
    ("running", "error"),
    ("running", "skipped"),
    ("running", "cancelled"),
    ("running", "waiting"),
    ("waiting", "running"),
    ("waiting", "error"),
    ("suspended", "running"),
    ("suspended", "error"),
    ("suspended", "cancelled"),
    ("error", "pending"),
    ("error", "running"),
    ("error", "skipping"),
    ("error", "skipped"),
    ("skipping", "skipped"),
    ("skipping", "error"),
    ("success", "reverting"),
    ("reverting", "reverted"),
    ("reverting", "skipped"),
}

PLAN_PAIRS = list(itertools.product(PlanState, PlanState))
STEP_PAIRS = list(itertools.product(StepState, StepState))


def test_the_state_names_are_the_documented_ones() -> None:
    assert [s.value for s in PlanState] == [
        "pending",
        "scheduled",
        "planning",
        "planned",
        "running",
        "paused",
        "stopped",
    ]
    assert {s.value for s in StepState} == {
        "pending",
        "running",
        "success",
        "suspended",
        "waiting",
        "skipping",
        "skipped",
        "error",
        "cancelled",
        "reverting",
        "reverted",
    }
    assert [r.value for r in PlanResult] == [
        "pending",
        "success",
        "warning",
        "error",
        "cancelled",
        "reverted",
    ]


@pytest.mark.parametrize(("current", "new"), PLAN_PAIRS, ids=[f"{a}->{b}" for a, b in PLAN_PAIRS])
def test_plan_transition(current: PlanState, new: PlanState) -> None:
    if current == new or (current.value, new.value) in ALLOWED_PLAN_MOVES:
        check_plan_transition(current, new)
    else:
        with pytest.raises(InvalidTransition, match=f"from {current} to {new}"):
            check_plan_transition(current, new)


@pytest.mark.parametrize(("current", "new"), STEP_PAIRS, ids=[f"{a}->{b}" for a, b in STEP_PAIRS])
def test_step_transition(current: StepState, new: StepState) -> None:
    if current == new or (current.value, new.value) in ALLOWED_STEP_MOVES:
        check_step_transition(current, new)
    else:
        with pytest.raises(InvalidTransition, match=f"from {current} to {new}"):
            check_step_transition(current, new)


@pytest.mark.parametrize(
    "new", [s for s in PlanState if s not in (PlanState.STOPPED, PlanState.PAUSED)]
)
def test_stopped_plan_is_terminal_but_for_a_revert(new: PlanState) -> None:
    with pytest.raises(InvalidTransition):
        check_plan_transition(PlanState.STOPPED, new)


@pytest.mark.parametrize("final", [StepState.SKIPPED, StepState.CANCELLED, StepState.REVERTED])
def test_finished_steps_are_terminal(final: StepState) -> None:
    for new in StepState:
        if new is not final:
            with pytest.raises(InvalidTransition):
                check_step_transition(final, new)


def test_typical_lifecycles_are_allowed() -> None:
    P = PlanState
    for path in (
        [P.PENDING, P.PLANNING, P.PLANNED, P.RUNNING, P.PAUSED, P.RUNNING, P.STOPPED],
        [P.PENDING, P.SCHEDULED, P.PLANNING, P.STOPPED],
    ):
        for current, new in itertools.pairwise(path):
            check_plan_transition(current, new)
    S = StepState
    for steps in (
        [S.PENDING, S.RUNNING, S.SUSPENDED, S.RUNNING, S.SUCCESS],
        [S.PENDING, S.RUNNING, S.ERROR, S.PENDING, S.RUNNING, S.SUCCESS],
        [S.PENDING, S.RUNNING, S.ERROR, S.SKIPPING, S.SKIPPED],
        [S.PENDING, S.RUNNING, S.SUCCESS, S.REVERTING, S.REVERTED],
    ):
        for before, after in itertools.pairwise(steps):
            check_step_transition(before, after)


def test_invalid_transition_is_a_dynflow_error() -> None:
    with pytest.raises(DynflowError):
        check_step_transition(StepState.SUCCESS, StepState.RUNNING)
