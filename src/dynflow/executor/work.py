"""Messages between the executor core and its workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dynflow.execution_plan.model import StepError
from dynflow.execution_plan.states import Phase, StepState


@dataclass(frozen=True)
class Work:
    """Run one phase of one action: everything a worker needs, no shared state."""

    execution_plan_id: str
    step_id: int
    action_id: int
    action_class: str
    phase: Phase
    queue: str
    input: Any
    output: dict[str, Any]
    event: Any = None
    #: how many times this step was handed to a worker (schedule_timeout uses it)
    sequence: int = 0
    #: the run of the plan in this executor it belongs to (see ``PlanRuntime.run``)
    run: int = 0
    #: its plan's priority: a pool runs the highest first (then in order of arrival)
    priority: int = 0


@dataclass(frozen=True)
class StepDone:
    """A worker's report: the step's new state, output and timing."""

    execution_plan_id: str
    step_id: int
    state: StepState
    output: dict[str, Any]
    error: StepError | None
    started_at: datetime
    ended_at: datetime
    execution_time: float
    #: the :attr:`Work.run` it answers: a result of an earlier run is ignored
    run: int = 0
    #: the action's ``retry`` retries this error (if attempts are left)
    retry: bool = False
    #: the :attr:`Work.sequence` it answers: a hand-out that timed out is not heard
    sequence: int = 0


@dataclass(frozen=True)
class Progress:
    execution_plan_id: str
    step_id: int
    done: float
    run: int = 0
