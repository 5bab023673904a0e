"""Deleting old plans: a stopped plan goes with its sub-plans, steps, actions, history
and delayed row, a batch of plans per transaction.

Only top-level plans are picked (a sub-plan goes with its parent), and a plan is
deleted only when every plan below it is stopped too: a child still running or
paused keeps its whole family until it stops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence.tables import (
    actions,
    delayed_plans,
    execution_history,
    execution_plans,
    plan_dependencies,
    steps,
)

#: ids per ``IN (...)``: well under every database's limit of bound parameters
CHUNK = 500

_PLAN = execution_plans.c


def old_plans(before: datetime, results: Sequence[PlanResult] | None) -> sa.Select[Any]:
    """Top-level plans that stopped before ``before`` (with one of ``results``)."""
    query = sa.select(_PLAN.id).where(
        _PLAN.state == str(PlanState.STOPPED),
        _PLAN.ended_at < before,
        _PLAN.caller_execution_plan_id.is_(None),
    )
    if results is not None:
        query = query.where(_PLAN.result.in_([str(r) for r in results]))
    return query


def families(connection: sa.Connection, roots: Sequence[str]) -> tuple[list[str], int]:
    """The plans of the ``roots`` whose whole family stopped, sub-plans included, and
    how many roots that is."""
    root_of = {plan_id: plan_id for plan_id in roots}
    blocked: set[str] = set()
    frontier = list(roots)
    while frontier:
        found = []
        for chunk in _chunks(frontier):
            rows = connection.execute(
                sa.select(_PLAN.id, _PLAN.state, _PLAN.caller_execution_plan_id).where(
                    _PLAN.caller_execution_plan_id.in_(chunk)
                )
            )
            for plan_id, state, caller in rows:
                root_of[plan_id] = root = root_of[caller]
                if state != str(PlanState.STOPPED):
                    blocked.add(root)
                found.append(plan_id)
        frontier = found
    kept = [plan_id for plan_id, root in root_of.items() if root not in blocked]
    return kept, len(roots) - len(blocked)


def delete(connection: sa.Connection, plan_ids: Sequence[str]) -> None:
    """Delete the plans and everything that belongs to them."""
    for chunk in _chunks(plan_ids):
        for table in (steps, actions, execution_history, delayed_plans, plan_dependencies):
            connection.execute(sa.delete(table).where(table.c.execution_plan_id.in_(chunk)))
        connection.execute(sa.delete(execution_plans).where(_PLAN.id.in_(chunk)))


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])
