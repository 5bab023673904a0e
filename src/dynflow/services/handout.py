"""Starting planned sub-plans in batches (``WithSubPlans``).

A parent starts up to its concurrency limit of children at a time. Their execution
locks are taken and the plans read in one write (one statement on PostgreSQL); each
child then goes, in the round-robin order of the executor worlds serving its queues,
to this world's executor directly (it holds the lock and the plan already: no
request, no second lock-and-load) or to another executor world with an execution
request, as :meth:`PlanControl.hand_out` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from dynflow import futures
from dynflow.cluster.client_dispatcher import may_run
from dynflow.cluster.remote import plan_needs
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import DynflowError, ExecutionError, LockTaken, NotFound
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState

if TYPE_CHECKING:
    from dynflow.services.control import PlanControl


def hand_out_many(control: PlanControl, plan_ids: Sequence[str]) -> list[Future[ExecutionPlan]]:
    """Execute these planned plans, as :meth:`PlanControl.hand_out` would each; one
    future per plan, in order."""
    if control.inline or len(plan_ids) < 2:
        return [control.hand_out(plan_id) for plan_id in plan_ids]
    try:
        control.require_alive()
    except DynflowError as exc:
        return [futures.failed(exc) for _ in plan_ids]
    try:  # any other failure took no lock, and is the caller's (the parent step fails)
        found = control.persistence.lock_and_load_execution_plans(control.world_id, plan_ids)
    except LockTaken:  # one of them is taken: one at a time, each failing on its own
        return [control.hand_out(plan_id) for plan_id in plan_ids]
    loaded = {plan.id: plan for plan in found}
    return [_start(control, plan_id, loaded.get(plan_id)) for plan_id in plan_ids]


def _start(control: PlanControl, plan_id: str, plan: ExecutionPlan | None) -> Future[ExecutionPlan]:
    if plan is None or plan.state is not PlanState.PLANNED:
        control.coordinator.release(EXECUTION_LOCK, plan_id)
        if plan is None:
            return futures.failed(NotFound(f"execution plan {plan_id} not found"))
        return futures.failed(
            ExecutionError(
                f"execution plan {plan_id} is {plan.state}/{plan.result}: only a plan "
                "that is planned can be executed this way"
            )
        )
    needs = plan_needs(plan)
    executor = control.executor
    if (
        executor is not None
        and may_run(control.code_version, plan.code_version)
        and control.cluster.client.takes_turn(control.world_id, needs)
    ):
        return executor.execute(plan)
    return control.cluster.execute(plan_id, needs)
