"""A plan's deadline, on the executor that runs it.

When an executor starts a plan with a ``deadline_at`` (triggering, resuming,
recovering or taking it over), it arms a timer on the world's clock for that time.
Then "deadline exceeded" goes into its history and the plan's running, suspended
and waiting cancellable steps get ``cancel()``; a plan the cancel stops ends
``stopped``/``error`` (not ``cancelled``). If the plan has not stopped
:data:`GRACE` seconds later (at once when no step could take the cancel), it is
halted: ``stopped``/``error``, its history ends with :data:`DEADLINE_EXCEEDED` and
the steps it stopped carry that error. A timer of a
plan that left this executor meanwhile does nothing: the next executor arms its own.
Plans past their deadline that no executor runs (``scheduled``, ``planned``,
``paused``) are halted by :mod:`dynflow.services.deadlines`.
"""

from __future__ import annotations

from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.executor.messages import DEADLINE_EXCEEDED, CancelSteps, HaltPlan
from dynflow.executor.runtime import PlanRuntime

__all__ = ["DEADLINE_EXCEEDED", "GRACE", "arm"]

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore

#: seconds a plan past its deadline gets to stop once its steps have the cancel event
GRACE = 5.0


def arm(core: ExecutorCore, runtime: PlanRuntime) -> None:
    """The plan has a deadline: act on it in time (after the start is committed)."""
    deadline = runtime.plan.deadline_at
    if deadline is None:
        return
    plan_id = runtime.id

    def schedule() -> None:
        delay = max((deadline - core.clock.utcnow()).total_seconds(), 0.0)
        core.clock.schedule(delay, partial(_due, core, plan_id))

    core._later(schedule, plan_id)


def _due(core: ExecutorCore, plan_id: str) -> None:
    reply: Future[list[Future[Any]]] = Future()
    reply.add_done_callback(partial(_cancelling, core, plan_id))
    core.post(CancelSteps(plan_id, reply, deadline=True))


def _cancelling(core: ExecutorCore, plan_id: str, reply: Future[list[Future[Any]]]) -> None:
    if reply.exception() is not None:
        return  # it stopped, or left this executor
    grace = GRACE if reply.result() else 0.0
    core.clock.schedule(grace, partial(_halt, core, plan_id))


def _halt(core: ExecutorCore, plan_id: str) -> None:
    halted: Future[Any] = Future()
    halted.add_done_callback(lambda f: f.exception())  # stopped meanwhile: nothing to do
    core.post(HaltPlan(plan_id, halted, DEADLINE_EXCEEDED))
