"""Deadlines of plans no executor runs: a ``scheduled``, ``planned`` or ``paused``
plan past its ``deadline_at`` is halted (a scheduled one ends ``stopped``/``error``
with the error "deadline exceeded"; the others are halted like by ``world.halt``,
their history ending with "deadline exceeded").

Executor worlds check at every look for delayed plans (one query); a running plan's
deadline is its executor's (:mod:`dynflow.executor.deadlines`).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from dynflow.action.registry import class_name
from dynflow.errors import DynflowError, ExecutionError
from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import PlanState
from dynflow.executor.deadlines import DEADLINE_EXCEEDED

if TYPE_CHECKING:
    from concurrent.futures import Future

    from dynflow.services.control import PlanControl
    from dynflow.services.delayed import DelayedPlans
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: plans past their deadline handled per look
BATCH = 100
#: states in which nobody executes a plan (a planned plan may be starting: the halt
#: goes to the world holding its lock)
IDLE = (PlanState.SCHEDULED, PlanState.PLANNED, PlanState.PAUSED)


class Deadlines:
    """Halts the idle plans whose deadline passed."""

    def __init__(self, ports: Ports, control: PlanControl, delayed: DelayedPlans) -> None:
        self.persistence = ports.persistence
        self.clock = ports.clock
        self.control = control
        self.delayed = delayed

    def check(self) -> int:
        """Halt (up to :data:`BATCH`) idle plans past their deadline; how many were asked."""
        filters = {"deadline_before": self.clock.utcnow(), "state": [str(s) for s in IDLE]}
        overdue = self.persistence.find_execution_plans(
            filters=filters, order_by="deadline_at", desc=False, per_page=BATCH
        )
        for plan in overdue:
            try:
                self._halt(plan)
            except DynflowError as exc:  # it moved on, or another world has it
                log.info("plan %s past its deadline: %s", plan.id, exc)
        return len(overdue)

    def _halt(self, plan: ExecutionPlan) -> None:
        log.warning("execution plan %s: deadline exceeded, halting it", plan.id)
        if plan.state is PlanState.SCHEDULED:
            message = f"execution plan {plan.id}: {DEADLINE_EXCEEDED} before it started"
            self.delayed.expire(plan.id, StepError(class_name(ExecutionError), message))
            return
        halted = self.control.halt(plan.id, DEADLINE_EXCEEDED)
        halted.add_done_callback(partial(_log, plan.id))


def _log(plan_id: str, halted: Future[ExecutionPlan]) -> None:
    error = halted.exception()
    if error is not None:
        log.info("plan %s past its deadline was not halted: %s", plan_id, error)
