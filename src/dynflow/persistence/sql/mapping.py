"""Rows <-> the plan read model: how plans, steps and actions are stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynflow.action import registry
from dynflow.errors import UnknownActionClass
from dynflow.execution_plan.model import ActionRecord, ExecutionPlan, HistoryEntry, Step, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.flows import from_json, to_json

Row = dict[str, Any]

#: the longest label the plans and actions tables keep
LABEL_LENGTH = 255
#: plan columns written once, with the new plan (planning a delayed plan keeps them)
ATTRIBUTE_COLUMNS = ("key", "code_version", "priority", "deadline_at", "labels")


def plan_rows(plan: ExecutionPlan) -> tuple[Row, list[Row], list[Row]]:
    """(plan row, action rows, step rows) of a plan to insert."""
    data: Row = {
        "run_flow": None if plan.run_flow is None else to_json(plan.run_flow),
        "finalize_flow": list(plan.finalize_flow),
    }
    if plan.trace_context:  # written once, with the rest of ``data``
        data["trace_context"] = dict(plan.trace_context)
    if plan.requires is not None:
        data["requires"] = {str(k): sorted(v) for k, v in sorted(plan.requires.items())}
    row = {
        "id": plan.id,
        "label": plan.label[:LABEL_LENGTH],
        "state": str(plan.state),
        "result": str(plan.result),
        "started_at": plan.started_at,
        "ended_at": plan.ended_at,
        "execution_time": plan.execution_time,
        "real_time": plan.real_time,
        "caller_execution_plan_id": plan.caller_execution_plan_id,
        "caller_action_id": plan.caller_action_id,
        "data": data,
        "key": plan.key,
        "code_version": plan.code_version,
        "priority": plan.priority,
        "deadline_at": plan.deadline_at,
        "labels": plan.labels or None,
    }
    actions = [
        {
            "execution_plan_id": plan.id,
            "id": a.id,
            "action_class": a.action_class,
            "label": a.label[:LABEL_LENGTH],
            "input": a.input,
            "output": a.output,
            "plan_step_id": a.plan_step_id,
            "run_step_id": a.run_step_id,
            "finalize_step_id": a.finalize_step_id,
            "parent_action_id": a.parent_action_id,
        }
        for a in plan.actions
    ]
    steps = [
        {
            "execution_plan_id": plan.id,
            "id": s.id,
            "action_id": s.action_id,
            "action_class": s.action_class,
            "phase": str(s.phase),
            "state": str(s.state),
            "queue": s.queue,
            "error": None if s.error is None else s.error.to_json(),
            "started_at": s.started_at,
            "ended_at": s.ended_at,
            "execution_time": s.execution_time,
            "real_time": s.real_time,
            "progress_done": s.progress_done,
            "progress_weight": s.progress_weight,
            "attempts": s.attempts,
            "next_attempt_at": s.next_attempt_at,
            "errors": [e.to_json() for e in s.errors] or None,
        }
        for s in plan.steps.values()
    ]
    return row, actions, steps


def plan_from_row(row: Mapping[Any, Any]) -> ExecutionPlan:
    """The plan of its row; its steps, actions and history are the caller's to attach."""
    data = row["data"] or {}
    return ExecutionPlan(
        id=row["id"],
        label=row["label"],
        state=PlanState(row["state"]),
        result=PlanResult(row["result"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        execution_time=row["execution_time"],
        real_time=row["real_time"],
        caller_execution_plan_id=row["caller_execution_plan_id"],
        caller_action_id=row["caller_action_id"],
        run_flow=from_json(data["run_flow"]) if data.get("run_flow") is not None else None,
        finalize_flow=tuple(data.get("finalize_flow", ())),
        trace_context=data.get("trace_context"),
        requires=_requires(data.get("requires")),
        key=row["key"],
        code_version=row["code_version"],
        priority=row["priority"] or 0,
        deadline_at=row["deadline_at"],
        labels=dict(row["labels"] or {}),
    )


def _requires(stored: Mapping[str, list[int]] | None) -> dict[int, frozenset[int]] | None:
    """The stored dependency map (None for a plan stored before it was kept)."""
    if stored is None:
        return None
    return {int(k): frozenset(v) for k, v in stored.items()}


def step_from_row(row: Mapping[Any, Any]) -> Step:
    return Step(
        id=row["id"],
        action_id=row["action_id"],
        action_class=row["action_class"],
        phase=Phase(row["phase"]),
        state=StepState(row["state"]),
        queue=row["queue"],
        error=StepError.from_json(row["error"]) if row["error"] else None,
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        execution_time=row["execution_time"],
        real_time=row["real_time"],
        progress_done=row["progress_done"],
        progress_weight=row["progress_weight"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        errors=[StepError.from_json(e) for e in row["errors"] or ()],
    )


def action_from_row(row: Mapping[Any, Any]) -> ActionRecord:
    """The action of its row, ``missing`` set when its class cannot be imported here."""
    missing = None
    try:
        registry.lookup(row["action_class"])
    except UnknownActionClass as exc:
        missing = str(exc)
    return ActionRecord(
        id=row["id"],
        action_class=row["action_class"],
        label=row["label"],
        input=row["input"],
        output=row["output"],
        plan_step_id=row["plan_step_id"],
        run_step_id=row["run_step_id"],
        finalize_step_id=row["finalize_step_id"],
        parent_action_id=row["parent_action_id"],
        missing=missing,
    )


def history_from_row(row: Mapping[Any, Any]) -> HistoryEntry:
    return HistoryEntry(row["time"], row["name"], row["world_id"])
