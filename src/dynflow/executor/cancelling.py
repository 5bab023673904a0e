"""``world.cancel``: the core's side. Each running or suspended cancellable step is
given the cancel event; a cancellable step still waiting for its limits never ran:
it ends ``cancelled`` at once, and its place in line is given up."""

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
from dynflow.executor.messages import DeliverEvent
from dynflow.executor.runtime import now
from dynflow.futures import resolve

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore


def cancel_steps(core: ExecutorCore, plan_id: str, reply: Future[list[Future[Any]]]) -> None:
    runtime = core.plans.get(plan_id)
    if runtime is None:
        core._fail(reply, ExecutionError(f"execution plan {plan_id} is not running here"))
        return
    futures: list[Future[Any]] = []
    for step in runtime.steps.values():
        if step.state not in (StepState.RUNNING, StepState.SUSPENDED, StepState.WAITING):
            continue
        cls = policy.action_class(runtime, step.action_id)
        if cls is None or not issubclass(cls, Cancellable):
            continue
        future: Future[Any] = Future()
        futures.append(future)
        if step.state is StepState.WAITING:
            if limits.give_up(core, runtime.id, step.id):
                runtime.set_step(step, StepState.CANCELLED, ended_at=now())
                core._later(partial(resolve, future, True), plan_id)
            else:  # a retry's backoff: not cancelled here
                futures.pop()
            continue
        runtime.events.setdefault(step.id, deque()).append(
            DeliverEvent(plan_id, step.id, CANCEL, future)
        )
        core._deliver_next(runtime, step.id)
    core._later(partial(resolve, reply, futures), plan_id)
    core._advance(runtime)
