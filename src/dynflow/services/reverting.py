"""``world.revert``: turn a paused or stopped plan to reverting, then execute it.

The revert is marked on the stored plan, under its execution lock, by the executor
core's own rules (:func:`dynflow.executor.offline.revert`); then the plan is
executed like a resumed one: by this world's executor, or (a client world) by an
executor world through the cluster. Any executor that starts a reverting plan later
(resume, hand-over, recovery) goes on reverting it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from dynflow import futures
from dynflow.cluster.client_dispatcher import may_run
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import DynflowError, ExecutionError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState
from dynflow.executor import offline

if TYPE_CHECKING:
    from dynflow.services.control import PlanControl

#: the states of a plan that can be reverted
REVERTIBLE = (PlanState.PAUSED, PlanState.STOPPED)


def revert(control: PlanControl, plan_id: str) -> Future[ExecutionPlan]:
    """Revert the plan: the future resolves with it ``stopped``/``reverted``, or
    ``paused``/``error`` when a revert failed (``resume`` goes on reverting)."""
    try:
        control.require_alive()
        plan = control.persistence.load_execution_plan(plan_id)
        if plan.state not in REVERTIBLE:
            raise ExecutionError(
                f"execution plan {plan_id} is {plan.state}: only a paused or stopped plan "
                "can be reverted (halt it first, or wait until it stops or pauses)"
            )
        plan = control.locked_plan(plan_id, REVERTIBLE)
    except DynflowError as exc:
        return futures.failed(exc)
    try:
        marked = offline.revert(
            control.persistence,
            control.world_id,
            plan,
            control.on_finished,
            registration=control.coordinator.registration(),
        )
    except DynflowError as exc:
        control.coordinator.release(EXECUTION_LOCK, plan_id)
        return futures.failed(exc)
    except BaseException:
        control.coordinator.release(EXECUTION_LOCK, plan_id)
        raise
    if marked.state is PlanState.STOPPED:  # nothing to revert: its lock went with it
        return futures.resolved(marked)
    if control.executor is None or not may_run(control.code_version, marked.code_version):
        # a client world, or an executor of another code version: the lock goes with
        # the plan to an executor that may run it
        return control.cluster.execute(plan_id)
    return control.executor.execute(marked)
