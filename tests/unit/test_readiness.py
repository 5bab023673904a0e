"""The incremental decision (``Readiness``) answers what the pure ``decide`` answers.

Random flow trees (sequences and concurrences nested, output references between
steps, finalize steps, steps outside the flows), random state changes: after each
change both must give the same decision, ready steps in the same order.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dynflow.director import Outcome, PlanShape, decide
from dynflow.execution_plan.states import StepState
from dynflow.flows import Atom, Concurrence, Flow, Sequence
from dynflow.readiness import Readiness

#: states drawn for changes: failures and cancellations rarer, else they decide alone
WEIGHTS = {
    StepState.PENDING: 6,
    StepState.RUNNING: 4,
    StepState.SUCCESS: 8,
    StepState.SUSPENDED: 1,
    StepState.WAITING: 1,
    StepState.SKIPPING: 1,
    StepState.SKIPPED: 2,
    StepState.ERROR: 1,
    StepState.CANCELLED: 0.3,
    StepState.REVERTING: 1,
    StepState.REVERTED: 1,
}
STATES = list(WEIGHTS)


def random_flow(rng: random.Random, ids: list[int], depth: int) -> Flow:
    if depth == 0 or rng.random() < 0.3:
        ids.append(len(ids) + 1)
        return Atom(ids[-1])
    kind = Sequence if rng.random() < 0.5 else Concurrence
    return kind([random_flow(rng, ids, depth - 1) for _ in range(rng.randint(0, 4))])


def random_shape(rng: random.Random) -> tuple[PlanShape, list[int]]:
    run: list[int] = []
    flow = random_flow(rng, run, rng.randint(0, 4))
    finalize = [len(run) + i + 1 for i in range(rng.randint(0, 3))]
    # steps outside the flows (plan steps); at least one step in all
    others = [len(run) + len(finalize) + i + 1 for i in range(rng.randint(not run + finalize, 2))]
    requires: dict[int, frozenset[int]] = {}
    for step_id in run:
        if rng.random() < 0.25:
            requires[step_id] = frozenset(rng.sample(run, rng.randint(1, min(3, len(run)))))
    shape = PlanShape(flow, tuple(finalize), requires)
    return shape, run + finalize + others


def draw(rng: random.Random) -> StepState:
    return rng.choices(STATES, weights=list(WEIGHTS.values()))[0]


@pytest.mark.parametrize("seed", range(400))
def test_random_changes_decide_as_the_pure_director(seed: int) -> None:
    rng = random.Random(seed)
    shape, steps = random_shape(rng)
    if rng.random() < 0.5:
        states = dict.fromkeys(steps, StepState.PENDING)
    else:
        states = {s: draw(rng) for s in steps}
    readiness = Readiness(shape, states)
    assert readiness.decide() == decide(shape, states)
    for _ in range(60):
        step_id = rng.choice(steps)
        states[step_id] = draw(rng)
        readiness.set(step_id, states[step_id])
        assert readiness.decide() == decide(shape, states), (shape, states)
        assert readiness.states == states


def run_like_an_executor(rng: random.Random, seen: Counter[str]) -> None:
    """Follow the decisions: ready steps run and end, some fail and are resumed or
    skipped, some plans are reverted; compare at every change."""
    shape, steps = random_shape(rng)
    states = dict.fromkeys(steps, StepState.PENDING)
    readiness = Readiness(shape, states)

    def change(step_id: int, state: StepState) -> None:
        states[step_id] = state
        readiness.set(step_id, state)
        assert readiness.decide() == decide(shape, states), (shape, states)

    for _ in range(200):
        decision = readiness.decide()
        assert decision == decide(shape, states)
        seen[f"{decision.outcome}{'+ready' if decision.ready else ''}"] += 1
        running = [s for s, st in states.items() if st is StepState.RUNNING]
        if decision.outcome is Outcome.FAILED:
            failed = [s for s, st in states.items() if st is StepState.ERROR]
            for step_id in failed:  # resume, skip, or revert what succeeded
                choice = rng.random()
                if choice < 0.4:
                    change(step_id, StepState.PENDING)
                elif choice < 0.8:
                    change(step_id, StepState.SKIPPED)
                else:
                    for done in [s for s, st in states.items() if st is StepState.SUCCESS]:
                        change(done, StepState.REVERTING)
                        change(done, StepState.REVERTED)
                    return
            continue
        if decision.outcome is not Outcome.CONTINUE:
            return
        for step_id in decision.ready:
            change(step_id, StepState.WAITING if rng.random() < 0.1 else StepState.RUNNING)
        waiting = [s for s, st in states.items() if st is StepState.WAITING]
        for step_id in waiting:
            change(step_id, StepState.RUNNING)
        if running:
            step_id = rng.choice(running)
            end = rng.choices(
                [StepState.SUCCESS, StepState.ERROR, StepState.SKIPPED, StepState.CANCELLED],
                weights=[20, 2, 1, 0.2],
            )[0]
            change(step_id, end)


def test_following_the_decisions_decides_as_the_pure_director() -> None:
    seen: Counter[str] = Counter()
    for seed in range(300):
        run_like_an_executor(random.Random(seed), seen)
    # the cases were met: a comparison that never saw them would prove nothing
    for outcome in ("continue+ready", "continue", "finished", "failed", "cancelled", "stuck"):
        assert seen[outcome], seen


def test_a_sequence_steps_forward_and_back() -> None:
    shape = PlanShape(Sequence([Atom(1), Concurrence([Atom(2), Atom(3)]), Atom(4)]), (5,))
    states = dict.fromkeys(range(1, 6), StepState.PENDING)
    readiness = Readiness(shape, states)
    assert readiness.decide().ready == (1,)
    readiness.set(1, StepState.SUCCESS)
    assert readiness.decide().ready == (2, 3)
    readiness.set(2, StepState.SUCCESS)
    readiness.set(3, StepState.SKIPPED)
    assert readiness.decide().ready == (4,)
    readiness.set(1, StepState.REVERTING)  # the first is not done again: nothing after it
    assert readiness.decide().ready == ()
    readiness.set(1, StepState.SUCCESS)
    readiness.set(4, StepState.SUCCESS)
    assert readiness.decide().ready == (5,)
    readiness.set(5, StepState.SUCCESS)
    assert readiness.decide().outcome is Outcome.FINISHED


def test_a_shape_it_cannot_follow_is_decided_by_the_pure_director() -> None:
    shape = PlanShape(Sequence([Atom(1), Atom(1), Atom(2)]))  # a step twice
    states = {1: StepState.PENDING, 2: StepState.PENDING}
    readiness = Readiness(shape, states)
    assert readiness.decide() == decide(shape, states)
    readiness.set(1, StepState.SUCCESS)
    states[1] = StepState.SUCCESS
    assert readiness.decide() == decide(shape, states)
    assert readiness.decide().ready == (2,)
    assert readiness.count(StepState.SUCCESS, StepState.PENDING) == 2
