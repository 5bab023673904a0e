"""The read model as JSON-ready views (pydantic models), shown by the console's pages,
returned by its JSON API and printed by the command line's ``--json``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from dynflow.action import registry
from dynflow.coordinator import LockRecord, WorldRecord
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan, Step, StepError
from dynflow.flows import Atom, Concurrence, Flow, Sequence
from dynflow.persistence.delayed import DelayedPlan
from dynflow.persistence.schedules import Schedule


class PlanSummary(BaseModel):
    id: str
    label: str
    state: str
    result: str
    started_at: datetime | None
    ended_at: datetime | None
    caller_execution_plan_id: str | None


class PlanList(BaseModel):
    items: list[PlanSummary]
    total: int
    page: int
    per_page: int
    pages: int
    #: plans in each state, under the other filters
    counts: dict[str, int]


class ErrorView(BaseModel):
    exception_class: str
    message: str
    backtrace: list[str]


class StepView(BaseModel):
    id: int
    action_id: int
    action_class: str
    phase: str
    state: str
    queue: str
    started_at: datetime | None
    ended_at: datetime | None
    execution_time: float
    real_time: float
    progress: float
    input: dict[str, Any]
    output: dict[str, Any]
    #: the last error (while ``waiting``: the one of the attempt to be retried)
    error: ErrorView | None
    #: runs started, and the most its action's ``retry`` allows (None: no retry)
    attempts: int = 0
    max_attempts: int | None = None
    #: when a ``waiting`` step's next attempt is due
    next_attempt_at: datetime | None = None
    #: the errors of the attempts that were retried, oldest first
    errors: list[ErrorView] = []


class FlowView(BaseModel):
    kind: Literal["atom", "sequence", "concurrence"]
    step_id: int | None = None
    flows: list[FlowView] = []


class HistoryView(BaseModel):
    time: datetime
    name: str
    world_id: str | None


class PlanDetail(PlanSummary):
    execution_time: float
    real_time: float
    progress: float
    entry_action_class: str
    steps: list[StepView]
    run_flow: FlowView | None
    execution_history: list[HistoryView]
    sub_plans: list[PlanSummary]


class WorldView(BaseModel):
    id: str
    executor: bool
    queues: list[str]
    heartbeat_at: datetime | None
    #: seconds since the last heartbeat, by the database's clock
    heartbeat_age: float | None = None
    meta: dict[str, Any]
    #: ids of the plans whose execution lock the world holds
    plans_held: list[str]
    current: bool


class DelayedView(BaseModel):
    execution_plan_id: str
    label: str
    action_class: str
    start_at: datetime
    start_before: datetime | None
    args: list[Any]
    kwargs: dict[str, Any]


class ScheduleView(BaseModel):
    name: str
    cron: str
    timezone: str
    action_class: str
    args: list[Any]
    kwargs: dict[str, Any]
    overlap: str
    catch_up: bool
    paused: bool
    next_run_at: datetime | None
    #: the next few due times (none while paused)
    next_runs: list[datetime]
    last_due_at: datetime | None
    last_plan_id: str | None
    #: its latest plans, the newest first
    recent_plans: list[PlanSummary]


class ActionOutcome(BaseModel):
    """The answer to a state-changing request."""

    ok: bool
    message: str
    plan: PlanSummary | None = None


def plan_summary(plan: ExecutionPlan) -> PlanSummary:
    return PlanSummary(
        id=plan.id,
        label=plan.label,
        state=str(plan.state),
        result=str(plan.result),
        started_at=plan.started_at,
        ended_at=plan.ended_at,
        caller_execution_plan_id=plan.caller_execution_plan_id,
    )


def _error(error: StepError) -> ErrorView:
    return ErrorView(
        exception_class=error.exception_class,
        message=error.message,
        backtrace=list(error.backtrace),
    )


def _max_attempts(step: Step) -> int | None:
    try:
        retry = registry.lookup(step.action_class).retry
    except DynflowError:  # not importable here: the page shows what is stored
        return None
    return None if retry is None else retry.attempts


def _step(plan: ExecutionPlan, step: Step) -> StepView:
    action = plan.action(step.action_id)
    return StepView(
        id=step.id,
        action_id=step.action_id,
        action_class=step.action_class,
        phase=str(step.phase),
        state=str(step.state),
        queue=step.queue,
        started_at=step.started_at,
        ended_at=step.ended_at,
        execution_time=step.execution_time,
        real_time=step.real_time,
        progress=step.progress_done,
        input=dict(action.input),
        output=dict(action.output),
        error=None if step.error is None else _error(step.error),
        attempts=step.attempts,
        max_attempts=_max_attempts(step) if step.phase == "run" else None,
        next_attempt_at=step.next_attempt_at,
        errors=[_error(e) for e in step.errors],
    )


def flow_view(flow: Flow) -> FlowView:
    match flow:
        case Atom(step_id):
            return FlowView(kind="atom", step_id=step_id)
        case Sequence(flows):
            return FlowView(kind="sequence", flows=[flow_view(f) for f in flows])
        case Concurrence(flows):
            return FlowView(kind="concurrence", flows=[flow_view(f) for f in flows])
    raise TypeError(flow)  # pragma: no cover


def plan_detail(plan: ExecutionPlan, sub_plans: list[ExecutionPlan]) -> PlanDetail:
    return PlanDetail(
        **plan_summary(plan).model_dump(),
        execution_time=plan.execution_time,
        real_time=plan.real_time,
        progress=plan.progress,
        entry_action_class=plan.entry_action.action_class,
        steps=[_step(plan, plan.steps[i]) for i in sorted(plan.steps)],
        run_flow=None if plan.run_flow is None else flow_view(plan.run_flow),
        execution_history=[
            HistoryView(time=h.time, name=h.name, world_id=h.world_id)
            for h in plan.execution_history
        ],
        sub_plans=[plan_summary(p) for p in sub_plans],
    )


def world_view(
    record: WorldRecord, locks: list[LockRecord], current_id: str, now: datetime | None = None
) -> WorldView:
    age = None
    if now is not None and record.heartbeat_at is not None:
        age = round(max((now - record.heartbeat_at).total_seconds(), 0.0), 1)
    return WorldView(
        id=record.id,
        executor=record.executor,
        queues=list(record.queues),
        heartbeat_at=record.heartbeat_at,
        heartbeat_age=age,
        meta=dict(record.meta),
        plans_held=sorted(lock.id for lock in locks if lock.owner_id == record.id),
        current=record.id == current_id,
    )


def delayed_view(delayed: DelayedPlan) -> DelayedView:
    return DelayedView(
        execution_plan_id=delayed.execution_plan_id,
        label=delayed.label,
        action_class=delayed.action_class,
        start_at=delayed.start_at,
        start_before=delayed.start_before,
        args=list(delayed.args),
        kwargs=dict(delayed.kwargs),
    )


def schedule_view(
    schedule: Schedule, recent: list[ExecutionPlan] | None = None, upcoming: int = 3
) -> ScheduleView:
    from dynflow.services.schedules import next_times

    times: list[datetime] = []
    if not schedule.paused and schedule.next_run_at is not None:
        times = [schedule.next_run_at]
        times += next_times(schedule.cron, schedule.timezone, times[0], upcoming - 1)
    return ScheduleView(
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        action_class=schedule.action_class,
        args=list(schedule.args),
        kwargs=dict(schedule.kwargs),
        overlap=schedule.overlap,
        catch_up=schedule.catch_up,
        paused=schedule.paused,
        next_run_at=schedule.next_run_at,
        next_runs=times,
        last_due_at=schedule.last_due_at,
        last_plan_id=schedule.last_plan_id,
        recent_plans=[plan_summary(p) for p in recent or []],
    )
