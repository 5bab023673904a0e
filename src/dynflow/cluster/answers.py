"""What an executor answers an execution request with, and how the client reads it.

A finished plan's answer carries the plan's own row (state, result, times,
labels, flows), not its steps, actions and history: the client reads those from
the database when they are first asked for. A plan whose row is big travels as
its id only (the client reads all of it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.persistence.codec import plan_from_json, plan_row_from_json, plan_row_to_json
from dynflow.serialization import dumps

log = logging.getLogger(__name__)

#: characters of JSON up to which a finished plan's row travels in an answer
PLAN_ANSWER_LIMIT = 64 * 1024


def plan_answer(plan: ExecutionPlan) -> Any:
    """The answer for a finished plan: ``{"id", "plan"}`` (its row), or its id when big."""
    row = plan_row_to_json(plan)
    if len(dumps(row)) > PLAN_ANSWER_LIMIT:
        return plan.id
    return {"id": plan.id, "plan": row}


def plan_from_answer(
    plan_id: str, answer: Any, details: Callable[[], PlanDetails]
) -> ExecutionPlan | None:
    """The plan an executor answered with, its steps, actions and history loaded by
    ``details`` on first access; None when the answer holds no plan (or a malformed
    one): then the caller reads it. (An answer of an earlier version holds the whole
    plan, as ``"document"``.)"""
    if not (isinstance(answer, dict) and answer.get("id") == plan_id):
        return None
    try:
        if "plan" not in answer:
            return plan_from_json(answer["document"])
        plan = plan_row_from_json(answer["plan"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("plan %s came malformed (%r): reading it instead", plan_id, exc)
        return None
    if plan.id != plan_id:
        log.warning("the answer for plan %s holds plan %s: reading it instead", plan_id, plan.id)
        return None
    plan._details = details
    return plan
