"""Halt and skip on a plan that no executor runs (placeholder until the core does it)."""

from __future__ import annotations

from collections.abc import Callable

from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.executor.core import singleton_locks, skip_step
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.persistence import Persistence
from dynflow.persistence.changes import Changes


def halt(
    persistence: Persistence,
    world_id: str,
    plan: ExecutionPlan,
    on_finished: Callable[[ExecutionPlan], None] | None = None,
) -> ExecutionPlan:
    runtime = PlanRuntime.from_plan(plan, Changes())
    for step in runtime.steps.values():  # e.g. left suspended by a terminated world
        if step.state is StepState.SUSPENDED:
            error = StepError("dynflow.errors.ExecutionError", "halted while suspended")
            runtime.set_step(step, StepState.ERROR, ended_at=now(), error=error)
    runtime.set_state(PlanState.STOPPED, PlanResult.ERROR, ended_at=now())
    runtime.record("halt execution", world_id)
    runtime.changes.released_locks.extend(singleton_locks(runtime))
    persistence.apply(runtime.changes)
    halted = persistence.load_execution_plan(plan.id)
    if on_finished is not None:
        on_finished(halted)
    return halted


def skip(
    persistence: Persistence, world_id: str, plan: ExecutionPlan, step_id: int
) -> ExecutionPlan:
    runtime = PlanRuntime.from_plan(plan, Changes())
    skip_step(runtime, step_id)
    persistence.apply(runtime.changes)
    return persistence.load_execution_plan(plan.id)
