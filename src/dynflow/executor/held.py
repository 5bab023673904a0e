"""Plans an executor core holds without executing them (``adopted``): a paused plan
whose lock this world took to change it (skip a step), or a plan with suspended steps
taken over to be halted. The core's side of those requests."""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from dynflow.errors import ExecutionError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor import policy
from dynflow.executor.runtime import PlanRuntime
from dynflow.futures import resolve

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore


def adopt(core: ExecutorCore, plan: ExecutionPlan, future: Future[None]) -> None:
    """Hold ``plan`` (its lock is this world's) without executing it."""
    if plan.id in core.plans or plan.id in core.adopted:
        core._fail(future, ExecutionError(f"execution plan {plan.id} is already held here"))
        return
    core.adopted[plan.id] = PlanRuntime.from_plan(plan, core.changes)
    core._later(partial(resolve, future, None))  # wrote nothing: never fenced off


def skip(core: ExecutorCore, plan_id: str, step_id: int, future: Future[ExecutionPlan]) -> None:
    """Skip a failed step of an adopted paused plan, then hand the plan back (its
    execution lock stays held: the plan stays paused until resumed)."""
    runtime = core.adopted.get(plan_id)
    error = policy.cannot_skip(runtime, plan_id, step_id)
    if error is not None:
        core._fail(future, error)
        return
    assert runtime is not None
    policy.skip_step(runtime, step_id)
    runtime.futures.append(future)
    core._let_go(core.adopted.pop(plan_id))
