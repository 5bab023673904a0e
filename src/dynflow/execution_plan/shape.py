"""Derive a plan's director shape from its stored form."""

from __future__ import annotations

from dynflow.director import PlanShape
from dynflow.execution_plan.builder import requires_from_inputs
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.flows import Concurrence


def shape_of(plan: ExecutionPlan) -> PlanShape:
    requires = plan.requires
    if requires is None:  # stored without it: the references still in the inputs
        requires = requires_from_inputs(
            {a.id: a.input for a in plan.actions}, {a.id: a.run_step_id for a in plan.actions}
        )
    return PlanShape(plan.run_flow or Concurrence(), tuple(plan.finalize_flow), requires)
