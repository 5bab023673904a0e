"""The answer to an execution request: the finished plan whole, so that the client
need not read it back (only its id when it is big)."""

from __future__ import annotations

import logging
from typing import Any

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence import documents
from dynflow.persistence.facade import plan_from_document
from dynflow.serialization import dumps

log = logging.getLogger(__name__)

#: bytes of JSON up to which an answer carries the finished plan
PLAN_ANSWER_LIMIT = 64 * 1024


def plan_answer(plan: ExecutionPlan) -> Any:
    """What an executor answers an execution request with."""
    document = documents.to_json(plan)
    if len(dumps(document)) > PLAN_ANSWER_LIMIT:
        return plan.id
    return {"id": plan.id, "document": document}


def plan_from_answer(plan_id: str, answer: Any) -> ExecutionPlan | None:
    """The plan an answer carries; None when it carries none (then read it)."""
    if isinstance(answer, dict) and answer.get("id") == plan_id:
        try:
            return plan_from_document(documents.from_json(answer["document"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("plan %s came malformed (%r): reading it instead", plan_id, exc)
    return None
