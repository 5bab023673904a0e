"""The director: decides, from a plan's shape and its step states, what happens next.

It is pure: no threads, no I/O. The executor feeds it step states and acts on
the :class:`Decision` it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from dynflow.execution_plan.states import DONE_STEP_STATES, StepState
from dynflow.flows import Atom, Concurrence, Flow, Sequence, step_ids


class Outcome(StrEnum):
    CONTINUE = "continue"  # steps are running/suspended, or ready ones were returned
    FINISHED = "finished"  # every run and finalize step is done
    FAILED = "failed"  # a step failed and nothing runs any more
    CANCELLED = "cancelled"  # a step was cancelled and nothing runs any more
    STUCK = "stuck"  # nothing can run and nothing is failed: the shape is unsatisfiable


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    ready: tuple[int, ...] = ()


@dataclass(frozen=True)
class PlanShape:
    """What the director needs to know about a plan: never changes after planning."""

    run_flow: Flow
    finalize_steps: tuple[int, ...] = ()
    #: step id -> run step ids it must wait for (output references)
    requires: Mapping[int, frozenset[int]] = field(default_factory=dict)

    def run_step_ids(self) -> list[int]:
        return list(step_ids(self.run_flow))

    def dependents(self, step_id: int) -> set[int]:
        """Steps that (transitively) require ``step_id``."""
        found: set[int] = set()
        frontier = {step_id}
        while frontier:
            frontier = {s for s, req in self.requires.items() if req & frontier} - found
            found |= frontier
        return found


_ACTIVE = frozenset({StepState.RUNNING, StepState.SUSPENDED, StepState.WAITING, StepState.SKIPPING})


def decide(shape: PlanShape, states: Mapping[int, StepState]) -> Decision:
    """What to do next, given every step's state.

    Ready steps are returned only if they are ``pending``. Once any step is in
    ``error`` (or ``cancelled``), nothing new starts; when nothing is active any
    more the plan has ``FAILED`` (or is ``CANCELLED``, which wins over failures).
    """
    active = any(state in _ACTIVE for state in states.values())
    if any(state is StepState.CANCELLED for state in states.values()):
        return Decision(Outcome.CONTINUE if active else Outcome.CANCELLED)
    if any(state is StepState.ERROR for state in states.values()):
        return Decision(Outcome.CONTINUE if active else Outcome.FAILED)
    ready: list[int] = []
    if not _walk(shape.run_flow, shape, states, ready):
        if ready or active:
            return Decision(Outcome.CONTINUE, tuple(ready))
        return Decision(Outcome.STUCK)
    for step_id in shape.finalize_steps:
        state = states[step_id]
        if state in DONE_STEP_STATES:
            continue
        if state is StepState.PENDING:
            return Decision(Outcome.CONTINUE, (step_id,))
        return Decision(Outcome.CONTINUE)
    return Decision(Outcome.FINISHED)


def _walk(flow: Flow, shape: PlanShape, states: Mapping[int, StepState], ready: list[int]) -> bool:
    """Collect ready steps of ``flow`` into ``ready``; return whether it is done."""
    match flow:
        case Atom(step_id):
            state = states[step_id]
            if state in DONE_STEP_STATES:
                return True
            if state is StepState.PENDING and all(
                states[r] in DONE_STEP_STATES for r in shape.requires.get(step_id, ())
            ):
                ready.append(step_id)
            return False
        case Sequence(flows):
            return all(_walk(sub, shape, states, ready) for sub in flows)
        case Concurrence(flows):
            done = [_walk(sub, shape, states, ready) for sub in flows]
            return all(done)
    raise TypeError(flow)  # pragma: no cover


def find_unreachable(shape: PlanShape) -> list[int]:
    """Steps that could never run even if every step succeeded (a dependency cycle)."""
    states = dict.fromkeys(shape.run_step_ids(), StepState.PENDING)
    states.update(dict.fromkeys(shape.finalize_steps, StepState.PENDING))
    while True:
        decision = decide(shape, states)
        if decision.outcome is Outcome.FINISHED:
            return []
        if not decision.ready:
            return sorted(s for s, st in states.items() if st is StepState.PENDING)
        for step_id in decision.ready:
            states[step_id] = StepState.SUCCESS
