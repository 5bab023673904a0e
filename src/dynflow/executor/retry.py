"""Retries of a failed ``run`` (``Action.retry``): the core's side.

A failed attempt that its action retries leaves the step ``waiting`` with the due
time of the next attempt persisted in ``next_attempt_at``; the timer that wakes it
(:class:`RetryDue`, on the world's clock) is armed only after that commit. No
worker is held meanwhile. An executor that starts the plan later (resume, hand-over,
recovery) arms the timer again from the persisted due time, so a wait outlives its
world.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action.retry import Retry
from dynflow.execution_plan.model import Step
from dynflow.execution_plan.states import Phase, StepState
from dynflow.executor import policy
from dynflow.executor.messages import RetryDue
from dynflow.executor.runtime import PlanRuntime
from dynflow.executor.work import StepDone

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore

log = logging.getLogger(__name__)

#: the retried errors a step keeps (the oldest are dropped): backtraces add up
KEPT_ERRORS = 20


def attempt_failed(core: ExecutorCore, runtime: PlanRuntime, step: Step, done: StepDone) -> bool:
    """If the step's action retries this failure and has attempts left, the step waits
    for the next attempt (True); otherwise it fails as usual (False)."""
    if done.state is not StepState.ERROR or not done.retry or step.phase is not Phase.RUN:
        return False
    retry = policy.action_attribute(runtime, step.action_id, "retry")
    if not isinstance(retry, Retry) or step.attempts >= retry.attempts:
        return False
    assert done.error is not None
    delay = retry.delay(step.attempts)
    runtime.set_step(
        step,
        StepState.WAITING,
        error=done.error,
        errors=[*step.errors, done.error][-KEPT_ERRORS:],
        next_attempt_at=core.clock.utcnow() + timedelta(seconds=delay),
        execution_time=step.execution_time + done.execution_time,
    )
    _arm(core, runtime, step, delay)
    return True


def handed_out(step: Step) -> dict[str, Any]:
    """The step's new values as it is handed to a worker: a new attempt, unless a
    suspended step is given an event."""
    return {
        "ended_at": None,
        "attempts": step.attempts + (step.state is not StepState.SUSPENDED),
        "next_attempt_at": None,
    }


def rearm(core: ExecutorCore, runtime: PlanRuntime) -> None:
    """Arm the timers of the plan's waiting steps (an executor just took the plan):
    each attempt runs at its persisted due time, not before."""
    for step in runtime.steps.values():
        if step.state is StepState.WAITING:
            due = step.next_attempt_at
            delay = 0.0 if due is None else (due - core.clock.utcnow()).total_seconds()
            _arm(core, runtime, step, max(delay, 0.0))


def due(core: ExecutorCore, message: RetryDue) -> None:
    """The next attempt of a waiting step is due: hand it to a worker."""
    runtime = core.plans.get(message.execution_plan_id)
    step = None if runtime is None else runtime.steps.get(message.step_id)
    if runtime is None or step is None or core.terminating is not None:
        return  # the plan left this executor: its next one arms the timer again
    if step.state is not StepState.WAITING or step.attempts != message.attempts:
        return  # an old timer (the plan was halted, or resumed and armed again)
    core._dispatch(runtime, step.id)
    core._advance(runtime)


def _arm(core: ExecutorCore, runtime: PlanRuntime, step: Step, delay: float) -> None:
    message = RetryDue(runtime.id, step.id, step.attempts)

    def schedule() -> None:
        core.clock.schedule(delay, partial(core.post, message))

    core._later(schedule, runtime.id)
