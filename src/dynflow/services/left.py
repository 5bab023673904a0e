"""Plans an executor left behind: which of them it left running, and who it was."""

from __future__ import annotations

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState, StepState

#: the states of a plan that an executor world may take up (execute, resume, recover)
RECOVERABLE = (PlanState.RUNNING, PlanState.PLANNED, PlanState.PAUSED)


def left_running(plan: ExecutionPlan) -> bool:
    """True for a plan whose executor died while it ran: still ``running``, or paused
    by the world that invalidated that executor while no executor was alive (its steps
    as the dead executor left them)."""
    return plan.state is PlanState.RUNNING or any(
        step.state is StepState.RUNNING for step in plan.steps.values()
    )


def last_executor(plan: ExecutionPlan) -> str | None:
    """The world that last started executing the plan (the one that died, when the plan
    was left running): named by its last ``start execution`` history entry."""
    starts = [e.world_id for e in plan.execution_history if e.name == "start execution"]
    return starts[-1] if starts else None
