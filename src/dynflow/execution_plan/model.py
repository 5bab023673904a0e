"""The read model of an execution plan: what users, the console and tests inspect."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.flows import Flow


@dataclass(frozen=True)
class StepError:
    """A failure stored on a step: a serialisable value, never a live exception."""

    exception_class: str
    message: str
    backtrace: tuple[str, ...] = ()

    @classmethod
    def from_exception(cls, exc: BaseException) -> StepError:
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        lines = traceback.format_exception(exc)
        return cls(name, str(exc) or name, tuple(line.rstrip("\n") for line in lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "exception_class": self.exception_class,
            "message": self.message,
            "backtrace": list(self.backtrace),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepError:
        return cls(data["exception_class"], data["message"], tuple(data.get("backtrace", ())))

    def __str__(self) -> str:
        return f"{self.exception_class}: {self.message}"


@dataclass
class Step:
    """One phase (plan, run or finalize) of one action: its state, error, times and progress."""

    id: int
    action_id: int
    action_class: str
    phase: Phase
    state: StepState
    queue: str = "default"
    error: StepError | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    execution_time: float = 0.0
    real_time: float = 0.0
    progress_done: float = 0.0
    progress_weight: float = 1.0
    #: runs of the step started (a retried ``run`` counts each attempt)
    attempts: int = 0
    #: when a ``waiting`` step's next attempt is due (world clock, UTC)
    next_attempt_at: datetime | None = None
    #: the errors of the attempts that were retried, oldest first (the last error of
    #: the step is also ``error``)
    errors: list[StepError] = field(default_factory=list)


@dataclass
class ActionRecord:
    """One action of a plan as stored: its class, input, output and the ids of its steps."""

    id: int
    action_class: str
    input: dict[str, Any]
    output: dict[str, Any]
    label: str
    plan_step_id: int | None = None
    run_step_id: int | None = None
    finalize_step_id: int | None = None
    parent_action_id: int | None = None
    #: set when the class cannot be imported in this process
    missing: str | None = None


class HistoryEntry(NamedTuple):
    """A line of a plan's execution history: when, what (``start execution``...) and where."""

    time: datetime
    name: str
    world_id: str | None


@dataclass
class ExecutionPlan:
    """A plan as stored: state, result and times; its steps and actions load on first use."""

    id: str
    label: str
    state: PlanState
    result: PlanResult
    started_at: datetime | None = None
    ended_at: datetime | None = None
    execution_time: float = 0.0
    real_time: float = 0.0
    caller_execution_plan_id: str | None = None
    caller_action_id: int | None = None
    run_flow: Flow | None = None
    finalize_flow: tuple[int, ...] = ()
    #: the trace context current where the plan was planned (W3C trace context headers),
    #: continued by whichever world executes it; None without tracing
    trace_context: dict[str, str] | None = None
    #: the idempotency key it was triggered with (unique per database), if any
    key: str | None = None
    #: the code version of the world that planned it (``World(code_version=...)``)
    code_version: str | None = None
    #: higher starts first among steps waiting in the same queue
    priority: int = 0
    #: when it is halted if not stopped by then (trigger time + ``deadline``)
    deadline_at: datetime | None = None
    #: the labels it was triggered with (str -> str)
    labels: dict[str, str] = field(default_factory=dict)
    #: run step id -> the run step ids whose output its input references, as planned
    #: (kept when the step runs and its input is resolved); None for a plan stored
    #: without it, whose references are read from the actions' inputs
    requires: dict[int, frozenset[int]] | None = None
    _details: Callable[[], PlanDetails] | PlanDetails | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # real time is wall time: stored when the plan stops (ended_at - started_at) or
        # pauses (until the pause); while it runs, the time since it started, as read
        if self.state is PlanState.RUNNING and self.started_at is not None:
            self.real_time = (datetime.now(UTC) - self.started_at).total_seconds()

    def _load(self) -> PlanDetails:
        if callable(self._details):
            self._details = self._details()
        if self._details is None:
            self._details = PlanDetails({}, [], [])
        return self._details

    @property
    def steps(self) -> dict[int, Step]:
        """Its steps by id: plan, run and finalize steps of every action."""
        return self._load().steps

    @property
    def actions(self) -> list[ActionRecord]:
        """Its actions, the entry action first."""
        return self._load().actions

    @property
    def execution_history(self) -> list[HistoryEntry]:
        """When it started, paused, finished or was taken over, and by which world."""
        return self._load().history

    @property
    def entry_action(self) -> ActionRecord:
        """The action that was triggered (or planned)."""
        return self.actions[0]

    @property
    def errors(self) -> list[StepError]:
        """The errors of its failed steps."""
        return [s.error for s in self.steps.values() if s.state is StepState.ERROR and s.error]

    @property
    def progress(self) -> float:
        """0.0 to 1.0: run steps' progress weighted by their weights."""
        if self.state is PlanState.STOPPED and self.result is PlanResult.SUCCESS:
            return 1.0
        run = [s for s in self.steps.values() if s.phase is Phase.RUN]
        total = sum(s.progress_weight for s in run)
        if not total:
            return 1.0 if self.state is PlanState.STOPPED else 0.0
        return sum(s.progress_done * s.progress_weight for s in run) / total

    def action(self, action_id: int) -> ActionRecord:
        """The action with this id (``KeyError`` if there is none)."""
        for action in self.actions:
            if action.id == action_id:
                return action
        raise KeyError(action_id)

    def __repr__(self) -> str:
        return f"<ExecutionPlan {self.id} {self.label!r} {self.state}/{self.result}>"


@dataclass(frozen=True)
class PlanAttributes:
    """What a plan is given at planning besides its actions: the trigger options and
    the planning world's code version (written once, with the plan)."""

    key: str | None = None
    code_version: str | None = None
    priority: int = 0
    deadline_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def apply(self, plan: ExecutionPlan) -> ExecutionPlan:
        plan.key = self.key
        plan.code_version = self.code_version
        plan.priority = self.priority
        plan.deadline_at = self.deadline_at
        plan.labels = dict(self.labels)
        return plan


@dataclass
class PlanDetails:
    steps: dict[int, Step]
    actions: list[ActionRecord]
    history: list[HistoryEntry]
