"""The director as a state machine: given a plan shape and step states, what happens next."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from dynflow.director import Decision, Outcome, PlanShape, decide, find_unreachable
from dynflow.execution_plan.states import StepState
from dynflow.flows import Atom, Concurrence, Flow, Sequence

PENDING = StepState.PENDING
RUNNING = StepState.RUNNING
SUCCESS = StepState.SUCCESS
SUSPENDED = StepState.SUSPENDED
SKIPPING = StepState.SKIPPING
SKIPPED = StepState.SKIPPED
ERROR = StepState.ERROR

CONTINUE = Outcome.CONTINUE
FINISHED = Outcome.FINISHED
FAILED = Outcome.FAILED
STUCK = Outcome.STUCK


def seq(*items: int | Flow) -> Sequence:
    return Sequence([Atom(i) if isinstance(i, int) else i for i in items])


def conc(*items: int | Flow) -> Concurrence:
    return Concurrence([Atom(i) if isinstance(i, int) else i for i in items])


def shape(
    flow: Flow,
    finalize: tuple[int, ...] = (),
    requires: Mapping[int, set[int]] | None = None,
) -> PlanShape:
    return PlanShape(
        flow, finalize, {step: frozenset(req) for step, req in (requires or {}).items()}
    )


def states(shape_: PlanShape, **overrides: StepState) -> dict[int, StepState]:
    """Every step of ``shape_`` pending, except ``s<id>=state`` overrides."""
    result = dict.fromkeys([*shape_.run_step_ids(), *shape_.finalize_steps], PENDING)
    for key, state in overrides.items():
        step_id = int(key.removeprefix("s"))
        assert step_id in result, f"step {step_id} is not in the shape"
        result[step_id] = state
    return result


Row = tuple[dict[str, StepState], Outcome, tuple[int, ...]]


def walk(shape_: PlanShape, table: list[Row]) -> None:
    """Check each row: with these step states the director decides this."""
    for number, (overrides, outcome, ready) in enumerate(table):
        decision = decide(shape_, states(shape_, **overrides))
        assert decision == Decision(outcome, ready), f"row {number}: {overrides}"


# -- run flows -------------------------------------------------------------------------


def test_sequence_releases_one_step_at_a_time() -> None:
    walk(
        shape(seq(1, 2, 3)),
        [
            ({}, CONTINUE, (1,)),
            ({"s1": RUNNING}, CONTINUE, ()),
            ({"s1": SUSPENDED}, CONTINUE, ()),
            ({"s1": SUCCESS}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SKIPPED}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SUCCESS}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS}, FINISHED, ()),
        ],
    )


def test_concurrence_releases_all_pending_steps() -> None:
    walk(
        shape(conc(1, 2, 3)),
        [
            ({}, CONTINUE, (1, 2, 3)),
            ({"s1": RUNNING}, CONTINUE, (2, 3)),
            ({"s1": RUNNING, "s2": SUSPENDED, "s3": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": RUNNING}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SKIPPED, "s3": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SKIPPED, "s3": SUCCESS}, FINISHED, ()),
        ],
    )


def test_sequences_inside_a_concurrence_advance_independently() -> None:
    walk(
        shape(conc(seq(1, 2), seq(3, 4), 5)),
        [
            ({}, CONTINUE, (1, 3, 5)),
            ({"s1": SUCCESS, "s3": RUNNING, "s5": RUNNING}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": RUNNING, "s3": SUCCESS, "s5": SUCCESS}, CONTINUE, (4,)),
            ({"s1": RUNNING, "s3": SUCCESS, "s4": SUCCESS, "s5": SUCCESS}, CONTINUE, ()),
            ({"s1": SUCCESS, "s3": SUCCESS, "s4": SUCCESS, "s5": SUCCESS}, CONTINUE, (2,)),
            (
                {"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SUCCESS, "s5": SUCCESS},
                FINISHED,
                (),
            ),
        ],
    )


def test_concurrences_inside_a_sequence_wait_for_the_whole_previous_group() -> None:
    walk(
        shape(seq(conc(1, 2), conc(3, 4), 5)),
        [
            ({}, CONTINUE, (1, 2)),
            ({"s1": SUCCESS}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS}, CONTINUE, (3, 4)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SKIPPED}, CONTINUE, (5,)),
            (
                {"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SUCCESS, "s5": SUCCESS},
                FINISHED,
                (),
            ),
        ],
    )


def test_deeply_nested_flow() -> None:
    walk(
        shape(seq(1, conc(seq(2, 3), 4), 5)),
        [
            ({}, CONTINUE, (1,)),
            ({"s1": SUCCESS}, CONTINUE, (2, 4)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s4": SUCCESS}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SUCCESS}, CONTINUE, (5,)),
        ],
    )


# -- output-reference dependencies -------------------------------------------------------


def test_requires_holds_a_step_until_the_required_one_is_done() -> None:
    walk(
        shape(conc(1, 2, 3), requires={2: {1}}),
        [
            ({}, CONTINUE, (1, 3)),
            ({"s1": RUNNING, "s3": RUNNING}, CONTINUE, ()),
            ({"s1": SUSPENDED, "s3": SUCCESS}, CONTINUE, ()),
            ({"s1": SKIPPING}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s3": RUNNING}, CONTINUE, (2,)),
            ({"s1": SKIPPED, "s3": RUNNING}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS}, FINISHED, ()),
        ],
    )


def test_requires_several_steps_waits_for_all_of_them() -> None:
    walk(
        shape(conc(1, 2, 3), requires={3: {1, 2}}),
        [
            ({}, CONTINUE, (1, 2)),
            ({"s1": SUCCESS, "s2": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SKIPPED}, CONTINUE, (3,)),
        ],
    )


def test_requires_across_branches_of_a_concurrence() -> None:
    walk(
        shape(conc(seq(1, 2), seq(3, 4)), requires={4: {2}}),
        [
            ({}, CONTINUE, (1, 3)),
            ({"s1": SUCCESS, "s3": SUCCESS}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS}, CONTINUE, (4,)),
        ],
    )


# -- errors ------------------------------------------------------------------------------


def test_an_error_stops_new_steps_until_nothing_is_active() -> None:
    walk(
        shape(conc(1, 2, 3, 4)),
        [
            # 1 failed: 3 and 4 are pending but must not start
            ({"s1": ERROR, "s2": RUNNING}, CONTINUE, ()),
            ({"s1": ERROR, "s2": SUSPENDED}, CONTINUE, ()),
            ({"s1": ERROR, "s2": SKIPPING}, CONTINUE, ()),
            ({"s1": ERROR, "s2": SUCCESS}, FAILED, ()),
            ({"s1": ERROR}, FAILED, ()),
            ({"s1": ERROR, "s2": ERROR, "s3": SUCCESS, "s4": SUCCESS}, FAILED, ()),
        ],
    )


def test_an_error_in_a_sequence_fails_without_releasing_the_next_step() -> None:
    walk(
        shape(seq(1, 2)),
        [
            ({"s1": ERROR}, FAILED, ()),
            ({"s1": SUCCESS, "s2": ERROR}, FAILED, ()),
        ],
    )


def test_an_error_in_a_finalize_step_fails_the_plan() -> None:
    walk(
        shape(seq(1), finalize=(2, 3)),
        [
            ({"s1": SUCCESS, "s2": ERROR}, FAILED, ()),
        ],
    )


def test_a_running_finalize_step_keeps_a_failed_plan_going() -> None:
    # an error anywhere, with a finalize step still running: wait for it
    walk(
        shape(conc(1), finalize=(2,)),
        [
            ({"s1": ERROR, "s2": RUNNING}, CONTINUE, ()),
        ],
    )


# -- finalize ----------------------------------------------------------------------------


def test_finalize_steps_run_one_by_one_after_every_run_step() -> None:
    walk(
        shape(conc(1, 2), finalize=(3, 4, 5)),
        [
            ({}, CONTINUE, (1, 2)),
            ({"s1": SUCCESS, "s2": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUSPENDED}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SKIPPED}, CONTINUE, (3,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": RUNNING}, CONTINUE, ()),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS}, CONTINUE, (4,)),
            ({"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SKIPPED}, CONTINUE, (5,)),
            (
                {"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SUCCESS, "s5": RUNNING},
                CONTINUE,
                (),
            ),
            (
                {"s1": SUCCESS, "s2": SUCCESS, "s3": SUCCESS, "s4": SUCCESS, "s5": SUCCESS},
                FINISHED,
                (),
            ),
        ],
    )


def test_finalize_only_plan_releases_finalize_at_once() -> None:
    walk(
        shape(conc(), finalize=(1, 2)),
        [
            ({}, CONTINUE, (1,)),
            ({"s1": SUCCESS}, CONTINUE, (2,)),
            ({"s1": SUCCESS, "s2": SUCCESS}, FINISHED, ()),
        ],
    )


def test_empty_plan_is_finished() -> None:
    assert decide(shape(conc()), {}) == Decision(FINISHED)


# -- stuck plans -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape_", "overrides"),
    [
        (shape(conc(1, 2), requires={1: {2}, 2: {1}}), {}),
        (shape(seq(1, 2), requires={1: {2}}), {}),
        (shape(conc(1, 2, 3), requires={2: {3}, 3: {2}}), {"s1": SUCCESS}),
        (shape(seq(1, 2), finalize=(3,), requires={2: {2}}), {"s1": SUCCESS}),
    ],
    ids=["cycle", "sequence-against-requires", "cycle-after-progress", "self-reference"],
)
def test_stuck_when_nothing_can_run(shape_: PlanShape, overrides: dict[str, StepState]) -> None:
    assert decide(shape_, states(shape_, **overrides)) == Decision(STUCK)


def test_not_stuck_while_something_is_active() -> None:
    shape_ = shape(conc(1, 2, 3), requires={2: {3}, 3: {2}})
    assert decide(shape_, states(shape_, s1=RUNNING)) == Decision(CONTINUE)


# -- static analysis ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape_", "unreachable"),
    [
        (shape(conc(1, 2, 3)), []),
        (shape(seq(1, conc(2, 3)), finalize=(4,), requires={3: {1}}), []),
        (shape(conc(1, 2), requires={1: {2}, 2: {1}}), [1, 2]),
        (shape(conc(1, 2, 3, 4), requires={2: {3}, 3: {2}, 4: {2}}), [2, 3, 4]),
        (shape(seq(1, 2, 3), requires={1: {3}}), [1, 2, 3]),
        (shape(conc(1, 2, 3), finalize=(4,), requires={2: {3}, 3: {2}}), [2, 3, 4]),
        (shape(conc(), finalize=(1,)), []),
    ],
    ids=[
        "no-requires",
        "forward-requires",
        "two-cycle",
        "cycle-and-dependent",
        "sequence-order-against-requires",
        "finalize-behind-cycle",
        "finalize-only",
    ],
)
def test_find_unreachable(shape_: PlanShape, unreachable: list[int]) -> None:
    assert find_unreachable(shape_) == unreachable


def test_dependents_are_transitive() -> None:
    shape_ = shape(
        conc(1, 2, 3, 4, 5, 6),
        requires={2: {1}, 3: {2}, 4: {3, 6}, 5: {6}},
    )
    assert shape_.dependents(1) == {2, 3, 4}
    assert shape_.dependents(2) == {3, 4}
    assert shape_.dependents(6) == {4, 5}
    assert shape_.dependents(4) == set()
    assert shape_.dependents(99) == set()


def test_dependents_terminate_on_cycles() -> None:
    shape_ = shape(conc(1, 2, 3), requires={1: {2}, 2: {1}, 3: {2}})
    assert shape_.dependents(1) == {1, 2, 3}
    assert shape_.dependents(3) == set()


def test_run_step_ids_follow_the_flow() -> None:
    assert shape(seq(4, conc(2, 9), 1), finalize=(7,)).run_step_ids() == [4, 2, 9, 1]
