"""Execution requests read together are taken over together.

An executor world's connector reads the envelopes addressed to it in batches; the
execution requests among them (a client world handing over plans it triggered) are
taken over in one go: their execution locks move to this world, their plans are
read and the ``Accepted`` answers written in one statement on PostgreSQL (one
statement per request elsewhere), instead of a round trip to the database per
request, one after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple

from dynflow import futures
from dynflow.cluster.client_dispatcher import may_run
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor import Executor
from dynflow.executor.messages import Reply
from dynflow.persistence.records import TakeOver
from dynflow.services import versions
from dynflow.services.left import RECOVERABLE, last_executor, left_running

if TYPE_CHECKING:
    from dynflow.services.control import PlanControl


class ExecutionRequest(NamedTuple):
    """An execution request to take over (see :meth:`PlanControl.take_over`)."""

    plan_id: str
    client_world_id: str
    request_id: str
    #: the ``Accepted`` answer's text, written with the move where the database can
    accepted: str | None = None
    #: the answer written with the plan's last commit here
    reply: Reply | None = None


def take_over_many(
    control: PlanControl, requests: Sequence[ExecutionRequest]
) -> list[tuple[Future[ExecutionPlan], bool]]:
    """:meth:`PlanControl.take_over` for each request, in order: (future, answered?)."""
    if len(requests) < 2:
        return [control.take_over(*request) for request in requests]
    requesters = [
        {"client_world_id": r.client_world_id, "request_id": r.request_id} for r in requests
    ]
    moves = [
        TakeOver(
            r.plan_id,
            r.client_world_id,
            requester,
            None if r.accepted is None else (r.client_world_id, r.accepted),
        )
        for r, requester in zip(requests, requesters, strict=True)
    ]
    try:
        executor = control.require_executor()
        taken = control.persistence.take_over_plans(control.world_id, moves)
    except DynflowError as exc:
        return [(futures.failed(exc), False) for _ in requests]
    return [
        start_taken(control, executor, r.plan_id, requester, took, r.reply)
        for r, requester, took in zip(requests, requesters, taken, strict=True)
    ]


def start_taken(
    control: PlanControl,
    executor: Executor,
    plan_id: str,
    requester: dict[str, Any],
    taken: tuple[bool, ExecutionPlan | None, bool],
    reply: Reply | None = None,
) -> tuple[Future[ExecutionPlan], bool]:
    """Run (or recover) a plan whose lock the take-over moved here (``taken``: see
    ``persistence.take_over_plan``); (future, answered?)."""
    moved, plan, answered = taken
    try:
        plan = control.locked_plan(plan_id, RECOVERABLE, requester, (moved, plan))
        if not may_run(control.code_version, plan.code_version):  # sent here by mistake
            control.coordinator.release(EXECUTION_LOCK, plan_id)
            raise versions.not_here(plan, control.world_id, control.code_version)
    except DynflowError as exc:
        return futures.failed(exc), answered
    if left_running(plan):  # its executor died: recover it here
        return executor.recover(plan, last_executor(plan), True, reply), answered
    return executor.execute(plan, reply), answered
