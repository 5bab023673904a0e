"""The read model as JSON-ready views (pydantic models), shown by the console's pages,
returned by its JSON API and printed by the command line's ``--json``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dynflow.action import registry
from dynflow.coordinator import LockRecord, WorldRecord
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan, Step, StepError
from dynflow.flows import Atom, Concurrence, Flow, Sequence
from dynflow.persistence.delayed import DelayedPlan
from dynflow.persistence.limits import LimitEntry
from dynflow.persistence.schedules import Schedule


class PlanSummary(BaseModel):
    id: str
    label: str
    state: str
    result: str
    started_at: datetime | None
    ended_at: datetime | None
    caller_execution_plan_id: str | None
    #: the class of the plan's entry action (None in plans stored without actions)
    action_class: str | None = None
    #: trigger options (``world.options``) and the planning world's code version
    key: str | None = None
    priority: int = 0
    deadline_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    code_version: str | None = None


class PlanList(BaseModel):
    items: list[PlanSummary]
    #: plans matching the filters; at least this many when ``total_capped``
    total: int
    total_capped: bool = False
    page: int
    per_page: int
    #: pages to go through (only the first 10,000 plans of a list are paged through)
    pages: int
    #: plans in each state, under the other filters (counting stops at 10,000)
    counts: dict[str, int]
    #: the states whose count is a lower bound (counting stopped)
    capped: list[str] = []


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
    #: the step is ``reverting`` and its action's ``revert`` failed (``error``)
    revert_failed: bool = False
    #: the limit keys a ``waiting`` step waits for (empty: none, or a retry's backoff)
    waiting_for: list[str] = []
    #: why a ``waiting`` step waits: "waiting for limit K" or "backoff until T"
    waiting_reason: str | None = None


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
    #: the plans it starts after (``after``), and the scheduled plans waiting for it
    after: list[str] = Field(default_factory=list)
    waited_by: list[str] = Field(default_factory=list)


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
    #: the world's own lease (seconds): a heartbeat older than this is a dead world
    lease: float | None = None
    #: worker threads per queue, when the world published them
    pool_sizes: dict[str, int] = {}
    #: worker threads running a step, per queue, at the world's last heartbeat
    pool_busy: dict[str, int] = {}
    #: the version of the code the world runs, when it says
    code_version: str | None = None

    @property
    def healthy(self) -> bool | None:
        """Whether its heartbeat is younger than its lease (None: unknown)."""
        if self.heartbeat_age is None or self.lease is None:
            return None
        return self.heartbeat_age <= self.lease


class BulkItem(BaseModel):
    id: str
    #: done, not paused, not running, failed, not found
    outcome: str
    detail: str = ""


class BulkOutcome(BaseModel):
    """The answer to a command on several plans: a summary and one line per plan."""

    ok: bool
    message: str
    items: list[BulkItem]


class MinuteCount(BaseModel):
    minute: datetime
    steps: int


class ActionFailures(BaseModel):
    action_class: str
    failed: int


class Overview(BaseModel):
    #: plans in each state
    counts: dict[str, int]
    #: steps finished in each of the last 60 minutes, the oldest first
    steps_per_minute: list[MinuteCount]
    #: the action classes with the most failed steps over the last 24 hours
    failing_actions: list[ActionFailures]
    worlds: list[WorldView]


class DelayedView(BaseModel):
    execution_plan_id: str
    label: str
    action_class: str
    start_at: datetime
    start_before: datetime | None
    args: list[Any]
    kwargs: dict[str, Any]


class LimitView(BaseModel):
    """A holder or a waiter of a limit key (``GET /api/limits``)."""

    key: str
    state: Literal["holding", "waiting"]
    execution_plan_id: str
    step_id: int
    world_id: str
    requested_at: datetime
    granted_at: datetime | None
    concurrency: int | None
    rate: int | None
    per: float | None
    #: a waiter's place in the key's line (1: next)
    position: int | None


def limit_view(entry: LimitEntry) -> LimitView:
    return LimitView.model_validate(entry, from_attributes=True)


def waiting_reason(step: Step, keys: list[str]) -> str | None:
    """Why a ``waiting`` step waits, in words."""
    if str(step.state) != "waiting":
        return None
    if step.next_attempt_at is not None:
        return f"backoff until {step.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
    return "waiting for limit " + (", ".join(keys) if keys else "(being requested)")


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


def plan_summary(plan: ExecutionPlan, action_class: str | None = None) -> PlanSummary:
    return PlanSummary(
        id=plan.id,
        label=plan.label,
        state=str(plan.state),
        result=str(plan.result),
        started_at=plan.started_at,
        ended_at=plan.ended_at,
        caller_execution_plan_id=plan.caller_execution_plan_id,
        action_class=action_class,
        key=plan.key,
        priority=plan.priority,
        deadline_at=plan.deadline_at,
        labels=dict(plan.labels),
        code_version=plan.code_version,
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


def _step(plan: ExecutionPlan, step: Step, limits: list[LimitEntry]) -> StepView:
    action = plan.action(step.action_id)
    keys = [e.key for e in limits if e.step_id == step.id and e.state == "waiting"]
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
        revert_failed=step.state == "reverting" and step.error is not None,
        waiting_for=keys,
        waiting_reason=waiting_reason(step, keys),
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


def plan_detail(
    plan: ExecutionPlan,
    sub_plans: list[ExecutionPlan],
    limits: list[LimitEntry] | None = None,
    after: list[str] | None = None,
    waited_by: list[str] | None = None,
) -> PlanDetail:
    """``limits``: the plan's holders and waiters (``find_limits(execution_plan_id=)``);
    ``after``/``waited_by``: the plans it waits for, and those waiting for it."""
    return PlanDetail(
        **plan_summary(plan, plan.entry_action.action_class).model_dump(),
        execution_time=plan.execution_time,
        real_time=plan.real_time,
        progress=plan.progress,
        entry_action_class=plan.entry_action.action_class,
        steps=[_step(plan, plan.steps[i], limits or []) for i in sorted(plan.steps)],
        run_flow=None if plan.run_flow is None else flow_view(plan.run_flow),
        execution_history=[
            HistoryView(time=h.time, name=h.name, world_id=h.world_id)
            for h in plan.execution_history
        ],
        sub_plans=[plan_summary(p) for p in sub_plans],
        after=list(after or ()),
        waited_by=list(waited_by or ()),
    )


def world_view(
    record: WorldRecord, locks: list[LockRecord], current_id: str, now: datetime | None = None
) -> WorldView:
    age = None
    if now is not None and record.heartbeat_at is not None:
        age = round(max((now - record.heartbeat_at).total_seconds(), 0.0), 1)
    sizes = record.meta.get("pool_sizes")
    busy = record.meta.get("pool_busy")
    version = getattr(record, "code_version", None) or record.meta.get("code_version")
    return WorldView(
        lease=record.lease,
        pool_sizes=dict(sizes) if isinstance(sizes, dict) else {},
        pool_busy=dict(busy) if isinstance(busy, dict) else {},
        code_version=None if version is None else str(version),
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
