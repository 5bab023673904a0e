"""What an executor answers an execution request with, and how the client reads it.

A finished plan travels whole in the answer when it is small, so that the
client world need not read it from the database; a big one travels as its id.
"""

from __future__ import annotations

import logging
from typing import Any

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence.codec import plan_from_json, plan_to_json
from dynflow.serialization import dumps

log = logging.getLogger(__name__)

#: characters of JSON up to which a finished plan travels whole in an answer
PLAN_ANSWER_LIMIT = 64 * 1024


def plan_answer(plan: ExecutionPlan) -> Any:
    """The answer for a finished plan: ``{"id", "document"}``, or only its id when big."""
    document = plan_to_json(plan)
    if len(dumps(document)) > PLAN_ANSWER_LIMIT:
        return plan.id
    return {"id": plan.id, "document": document}


def plan_from_answer(plan_id: str, answer: Any) -> ExecutionPlan | None:
    """The plan an executor answered with; None when the answer holds no plan (or a
    malformed one): then the caller reads it."""
    if not (isinstance(answer, dict) and answer.get("id") == plan_id):
        return None
    try:
        return plan_from_json(answer["document"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("plan %s came malformed (%r): reading it instead", plan_id, exc)
        return None
