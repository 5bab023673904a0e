"""``world.cancel``: the core's side.

Each running, suspended or ``waiting`` step of a cancellable action gets the
cancel: the engine calls the action's ``cancel()`` instead of ``run`` and the step
ends ``cancelled``. A running step gets it once it suspends (if it ends otherwise,
the cancel is not delivered); a step waiting for a retry's backoff gets it at once,
instead of its next attempt; a step waiting for its limits never ran: it ends
``cancelled`` at once and gives up its place in line. Steps of other actions are
left alone (a waiting one keeps waiting).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action.cancellable import Cancellable
from dynflow.action.events import CANCEL
from dynflow.errors import ExecutionError
from dynflow.execution_plan.states import StepState
from dynflow.executor import limits, policy
from dynflow.executor.messages import DEADLINE_EXCEEDED, DeliverEvent
from dynflow.executor.runtime import now
from dynflow.futures import resolve

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore

_CANCELLABLE = (StepState.RUNNING, StepState.SUSPENDED, StepState.WAITING)


def cancel(
    core: ExecutorCore, plan_id: str, reply: Future[list[Future[Any]]], deadline: bool = False
) -> None:
    """Send the cancel to the plan's cancellable steps; ``reply`` gets one future per
    step, resolved once the step has it. ``deadline``: the plan's deadline passed (it is
    recorded, and the plan ends ``error`` even if the cancel stops it)."""
    runtime = core.plans.get(plan_id)
    if runtime is None:
        core._fail(reply, ExecutionError(f"execution plan {plan_id} is not running here"))
        return
    if deadline and not runtime.past_deadline:
        runtime.past_deadline = True
        runtime.record(DEADLINE_EXCEEDED, core.world_id)
    futures: list[Future[Any]] = []
    for step in runtime.steps.values():
        if step.state not in _CANCELLABLE:
            continue
        cls = policy.action_class(runtime, step.action_id)
        if cls is None or not issubclass(cls, Cancellable):
            continue
        future: Future[Any] = Future()
        futures.append(future)
        if step.state is StepState.WAITING and limits.give_up(core, runtime.id, step.id):
            runtime.set_step(step, StepState.CANCELLED, ended_at=now())
            core._later(partial(resolve, future, True), plan_id)
            continue
        if step.state is StepState.WAITING:  # its timer finds it no longer waiting
            if core._dispatch(runtime, step.id, CANCEL):
                core._later(partial(resolve, future, True), plan_id)
            else:
                core._fail(future, ExecutionError(str(step.error)))
            continue
        runtime.events.setdefault(step.id, deque()).append(
            DeliverEvent(plan_id, step.id, CANCEL, future)
        )
        core._deliver_next(runtime, step.id)
    core._later(partial(resolve, reply, futures), plan_id)
    core._advance(runtime)
