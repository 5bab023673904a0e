"""What a parent's round of sub-plans reads: see ``Persistence.sub_plan_round``."""

from __future__ import annotations

from typing import NamedTuple

from dynflow.execution_plan.states import PlanResult, PlanState


class SubPlanRound(NamedTuple):
    """The children of one action, as a ``WithSubPlans`` step reads them each time it
    runs."""

    #: how many children are in each (state, result)
    counts: dict[tuple[PlanState, PlanResult], int]
    #: planned children being started: they hold their execution lock
    starting: int
    #: ids of planned children that may start now, in no order
    to_start: list[str]
