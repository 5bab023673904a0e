"""Review before running: a ``planned`` plan is approved (then executed) or rejected
(then halted), and who decided goes into its execution history first."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState
from dynflow.persistence import PersistencePort

#: the longest name of a history entry (its column)
MAX_ENTRY = 50


class Operations(Protocol):
    """What a review needs of the world: its id, storage, and two plan operations."""

    @property
    def id(self) -> str: ...

    @property
    def persistence(self) -> PersistencePort: ...

    def execute(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...


class NotPlanned(DynflowError):
    """Only a ``planned`` plan waits for a review."""


def entry(decision: str, who: str) -> str:
    """The history entry of a decision: ``approved by alice``, cut to the column's size."""
    return f"{decision} by {who.strip() or 'unknown'}"[:MAX_ENTRY]


def _planned(world: Operations, plan_id: str) -> None:
    plan = world.persistence.load_execution_plan(plan_id)  # NotFound first
    if plan.state is not PlanState.PLANNED:
        raise NotPlanned(
            f"execution plan {plan_id} is {plan.state}, not planned: only a plan made with "
            "world.plan(...) and not started yet can be approved or rejected"
        )


def approve(world: Operations, plan_id: str, who: str) -> Future[ExecutionPlan]:
    """Record "approved by ``who``", then execute the plan."""
    _planned(world, plan_id)
    world.persistence.record_history(plan_id, entry("approved", who), world.id)
    return world.execute(plan_id)


def reject(world: Operations, plan_id: str, who: str) -> Future[ExecutionPlan]:
    """Record "rejected by ``who``", then halt the plan (it ends stopped/error)."""
    _planned(world, plan_id)
    world.persistence.record_history(plan_id, entry("rejected", who), world.id)
    return world.halt(plan_id)
