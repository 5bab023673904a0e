"""In-memory state of a plan while an executor runs it."""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from dynflow.director import PlanShape
from dynflow.execution_plan.model import (
    ActionRecord,
    ExecutionPlan,
    HistoryEntry,
    PlanDetails,
    Step,
)
from dynflow.execution_plan.shape import shape_of
from dynflow.execution_plan.states import (
    PlanResult,
    PlanState,
    StepState,
    check_plan_transition,
    check_step_transition,
)
from dynflow.executor.messages import Reply
from dynflow.persistence.changes import PLAN_MUTABLE, STEP_MUTABLE, Changes
from dynflow.readiness import Readiness

#: numbers the runs of plans in this process (see ``PlanRuntime.run``)
_RUNS = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PlanRuntime:
    """A running plan: its read model, kept current, plus what only the executor needs.

    Every mutation goes through a method that records the row in ``changes``.
    """

    plan: ExecutionPlan
    shape: PlanShape
    steps: dict[int, Step]
    actions: dict[int, ActionRecord]
    history: list[HistoryEntry]
    changes: Changes
    futures: list[Future[ExecutionPlan]] = field(default_factory=list)
    #: steps whose result must be ignored when it arrives (halted, abandoned)
    abandoned: set[int] = field(default_factory=set)
    #: its deadline passed here: a plan that ends cancelled then ends ``error``
    past_deadline: bool = False
    #: events waiting for their step to suspend, per step, in arrival order
    events: dict[int, deque[Any]] = field(default_factory=dict)
    #: steps whose ``revert`` a worker runs now (see :mod:`dynflow.executor.revert`)
    reverting: set[int] = field(default_factory=set)
    #: steps whose ``revert`` suspended: it waits here for an event (no worker held)
    suspended_reverts: set[int] = field(default_factory=set)
    #: how many times each step was handed to a worker here
    sequences: dict[int, int] = field(default_factory=dict)
    #: this run of the plan: a worker of an earlier run of the same plan (one this
    #: world dropped when it was declared dead) may still report, and is not heard
    run: int = field(default_factory=lambda: next(_RUNS))
    #: the answer to write with the commit that lets the plan go (see :class:`Reply`)
    reply: Reply | None = None
    #: the director's decision, kept current by ``set_step``
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(self.shape, self.states())

    @classmethod
    def from_plan(cls, plan: ExecutionPlan, changes: Changes, *, copy: bool = True) -> PlanRuntime:
        """The runtime of ``plan``: its plan row is ``plan`` itself; its steps and
        actions are copies, unless ``copy`` is False (the caller hands the plan over
        and never reads it again: the runtime changes its steps and actions in place)."""
        if copy:
            steps = {sid: replace(step) for sid, step in plan.steps.items()}
            actions = {a.id: replace(a) for a in plan.actions}
        else:
            steps = dict(plan.steps)
            actions = {a.id: a for a in plan.actions}
        return cls(
            plan=plan,
            shape=shape_of(plan),
            steps=steps,
            actions=actions,
            history=list(plan.execution_history),
            changes=changes,
        )

    @property
    def id(self) -> str:
        return self.plan.id

    def next_sequence(self, step_id: int) -> int:
        self.sequences[step_id] = self.sequences.get(step_id, 0) + 1
        return self.sequences[step_id]

    def states(self) -> dict[int, StepState]:
        return {sid: step.state for sid, step in self.steps.items()}

    # -- mutations, each recorded for the next commit ----------------------------

    def set_step(self, step: Step, state: StepState, **values: Any) -> None:
        check_step_transition(step.state, state)
        step.state = state
        self.readiness.set(step.id, state)
        for name, value in values.items():
            setattr(step, name, value)
        row = {name: getattr(step, name) for name in STEP_MUTABLE}
        row["state"] = str(step.state)
        row["error"] = step.error.to_json() if step.error else None
        row["errors"] = [e.to_json() for e in step.errors] or None
        self.changes.steps[(self.id, step.id)] = row

    def set_output(self, action_id: int, output: dict[str, Any]) -> None:
        self.actions[action_id].output = output
        self.changes.outputs[(self.id, action_id)] = output

    def set_input(self, action_id: int, value: dict[str, Any]) -> None:
        """The input with its output references resolved: kept, so that the plan shows
        what the step ran with and later phases see the same values."""
        self.actions[action_id].input = value
        self.changes.inputs[(self.id, action_id)] = value

    def set_state(self, state: PlanState, result: PlanResult | None = None, **values: Any) -> None:
        check_plan_transition(self.plan.state, state)
        self.plan.state = state
        if result is not None:
            self.plan.result = result
        for name, value in values.items():
            setattr(self.plan, name, value)
        self.plan.execution_time = sum(s.execution_time for s in self.steps.values())
        row = {name: getattr(self.plan, name) for name in PLAN_MUTABLE}
        row["state"] = str(self.plan.state)
        row["result"] = str(self.plan.result)
        self.changes.plans[self.id] = row

    def record(self, name: str, world_id: str | None) -> None:
        entry = HistoryEntry(now(), name, world_id)
        self.history.append(entry)
        self.changes.history.append((self.id, entry.time, name, world_id))

    def wall_time(self, until: datetime) -> float:
        """The plan's real time at ``until``: wall time since it first started, paused
        time included (the stored value if it never started)."""
        if self.plan.started_at is None:
            return self.plan.real_time
        return (until - self.plan.started_at).total_seconds()

    def final(self) -> ExecutionPlan:
        """The read model of a plan the executor let go of: made of the runtime's own
        steps and actions, not copies (nothing changes them any more)."""
        return replace(
            self.plan,
            _details=PlanDetails(
                steps=self.steps, actions=list(self.actions.values()), history=self.history
            ),
        )

    def snapshot(self) -> ExecutionPlan:
        """An independent read model of the plan as it is now."""
        return replace(
            self.plan,
            _details=PlanDetails(
                steps={sid: replace(s) for sid, s in self.steps.items()},
                actions=[replace(a, output=dict(a.output)) for a in self.actions.values()],
                history=list(self.history),
            ),
        )
