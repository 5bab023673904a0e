"""Timeouts of steps, the core's side: a suspended step that waited too long for an
event (``Action.schedule_timeout``), and an attempt of ``run`` that ran longer than
its action's ``run_timeout``.

The runner arms the deadline when the attempt starts (time queued for a worker
does not count). A thread cannot be killed: at the deadline the attempt fails with
:class:`dynflow.StepTimeout` (retried like any error if the action's ``retry.on``
lists it), the hand-out sequence of the step moves on so that the late result is
discarded when it comes, and the executor is told (``core.release``) to give the
worker slot back. An ``async def run`` is cancelled instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from dynflow import errors
from dynflow.action.registry import class_name
from dynflow.action.retry import Retry
from dynflow.execution_plan.model import StepError
from dynflow.execution_plan.states import StepState
from dynflow.executor import policy
from dynflow.executor.messages import RunTimeout, StepTimeout
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.work import StepDone

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore


def suspended_too_long(core: ExecutorCore, timeout: StepTimeout) -> None:
    """Fail the step if it is still suspended since the hand-out the timeout names."""
    runtime = core.plans.get(timeout.execution_plan_id)
    if runtime is None or timeout.step_id not in runtime.steps:
        return
    step = runtime.steps[timeout.step_id]
    if step.state is not StepState.SUSPENDED:
        return
    if runtime.sequences.get(step.id, 0) != timeout.sequence:
        return  # an event came since the timeout was scheduled
    core._drop_events(runtime, step.id, "the step timed out")
    runtime.set_step(
        step,
        StepState.ERROR,
        ended_at=now(),
        error=StepError(
            "TimeoutError",
            f"step {step.id} timed out: no event within {timeout.seconds:g} s",
        ),
    )
    core._advance(runtime)


def stale(runtime: PlanRuntime, done: StepDone) -> bool:
    """A result of a hand-out the core already gave up on (it timed out)."""
    return done.sequence != runtime.sequences.get(done.step_id, done.sequence)


def ran_too_long(core: ExecutorCore, message: RunTimeout) -> None:
    """The attempt ran past ``run_timeout``: it fails now (and may be retried)."""
    runtime = core.plans.get(message.execution_plan_id)
    step = None if runtime is None else runtime.steps.get(message.step_id)
    if runtime is None or step is None or runtime.run != message.run:
        return
    if step.state is not StepState.RUNNING or runtime.sequences.get(step.id) != message.sequence:
        return  # it ended (or suspended) in time
    sequence = runtime.next_sequence(step.id)  # its late result is discarded
    key = (runtime.id, step.id, runtime.run, message.sequence)
    core._later(partial(core.release, *key))
    error = errors.StepTimeout(
        f"step {step.id} ({step.action_class}) ran longer than its run_timeout of "
        f"{message.seconds:g} s: this attempt failed (raise run_timeout, or list "
        "dynflow.StepTimeout in Retry.on to try again)"
    )
    retry = policy.action_attribute(runtime, step.action_id, "retry")
    started = step.started_at or datetime.now(UTC)
    core._step_done(
        StepDone(
            execution_plan_id=runtime.id,
            step_id=step.id,
            state=StepState.ERROR,
            output=runtime.actions[step.action_id].output,
            error=StepError(class_name(errors.StepTimeout), str(error)),
            started_at=started,
            ended_at=now(),
            execution_time=message.seconds,
            run=runtime.run,
            sequence=sequence,
            retry=isinstance(retry, Retry) and retry.retries(error),
        )
    )
