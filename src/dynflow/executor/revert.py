"""Reverting a plan (``world.revert``, ``Rescue.REVERT``): the core's side.

A plan is *reverting* once its history has a ``revert execution`` entry (written in
the same commit as the first changes of the revert), so that whichever executor
starts the plan later (a resume, a hand-over, the recovery of a dead world's plan)
goes on reverting it and never runs ``run`` again. No step is added: the run step
of an action being reverted goes ``success -> reverting -> reverted``.

- The actions whose run step succeeded, and whose class overrides ``revert`` (or is
  not registered here: its ``revert`` then fails, it is never ignored), are
  reverted one at a time, the newest run completion first (``ended_at``; on a tie
  the higher step id first). Other actions have nothing to undo: their steps stay
  as they are (``success``, ``pending``, ``error``, ``skipped``, ``cancelled``).
- When the revert begins, steps whose run did not end (``suspended``, ``waiting``,
  or ``running`` in a plan whose executor died) are given up: they end ``error``.
- A revert that fails leaves its step ``reverting`` with its ``error`` set ("revert
  failed"): the plan pauses (``paused``/``error``); ``resume`` runs that revert
  again, ``skip`` gives it up (the step ends ``skipped``) and resume goes on with
  the others. A step left ``reverting`` by an executor that died or was halted
  runs its revert again: ``revert`` must be idempotent.
- A ``revert`` may suspend (``WithSubPlans`` waits so for its children's reverts):
  its step stays ``reverting`` and holds no worker; each event delivered to it runs
  ``revert(event)`` again, until it returns or fails. The suspension lives in this
  executor only: the next executor of the plan (resume, hand-over, recovery) calls
  ``revert()`` afresh, which must find out again where it stands.
- Once nothing is left to revert the plan ends ``stopped``/``reverted``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action.registry import class_name
from dynflow.errors import ExecutionError
from dynflow.execution_plan.model import Step, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.executor import policy
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.work import StepDone, Work
from dynflow.futures import resolve

if TYPE_CHECKING:
    from concurrent.futures import Future

    from dynflow.execution_plan.model import ExecutionPlan
    from dynflow.executor.core import ExecutorCore

#: the history entry that turns a plan to reverting
REVERT_EXECUTION = "revert execution"
#: the runs given up when the revert begins
_GIVEN_UP = (StepState.SUSPENDED, StepState.WAITING, StepState.RUNNING)
_EPOCH = datetime.min.replace(tzinfo=UTC)


def active(runtime: PlanRuntime) -> bool:
    """True when the plan is reverting (or reverted)."""
    return runtime.readiness.count(StepState.REVERTING, StepState.REVERTED) > 0 or any(
        entry.name == REVERT_EXECUTION for entry in runtime.history
    )


def to_revert(runtime: PlanRuntime) -> list[Step]:
    """The run steps still to revert, in the order they are reverted."""
    steps = [
        step
        for step in runtime.steps.values()
        if step.phase is Phase.RUN and step.state is StepState.SUCCESS and _undoes(runtime, step)
    ]
    return sorted(steps, key=lambda s: (s.ended_at or _EPOCH, s.id), reverse=True)


def _undoes(runtime: PlanRuntime, step: Step) -> bool:
    cls = policy.action_class(runtime, step.action_id)
    return cls is None or cls.has_phase(Phase.REVERT)


def begin(core: ExecutorCore, runtime: PlanRuntime) -> None:
    """Turn the plan to reverting: the runs that did not end are given up."""
    for step in runtime.steps.values():
        if step.state in _GIVEN_UP:
            core._drop_events(runtime, step.id, "the plan is being reverted")
            runtime.abandoned.discard(step.id)
            error = StepError(
                class_name(ExecutionError), f"given up ({step.state}): the plan was reverted"
            )
            runtime.set_step(step, StepState.ERROR, ended_at=now(), error=error)
    runtime.record(REVERT_EXECUTION, core.world_id)


def resume(runtime: PlanRuntime) -> None:
    """A reverting plan is executed again: a revert that failed runs again."""
    for step in runtime.steps.values():
        if step.state is StepState.REVERTING and step.error is not None:
            runtime.set_step(step, StepState.REVERTING, error=None)


def advance(core: ExecutorCore, runtime: PlanRuntime) -> None:
    """What a reverting plan does next: wait for the revert a worker runs, pause on a
    failed one, or revert the next action; stop ``reverted`` when none is left."""
    current = next((s for s in runtime.steps.values() if s.state is StepState.REVERTING), None)
    if current is not None and current.id in runtime.reverting:
        return
    if current is not None and current.id in runtime.suspended_reverts:
        if core.terminating is None:
            return  # an event wakes it
        core._drop_events(runtime, current.id, f"world {core.world_id} is terminating")
        core._pause(runtime, PlanResult.PENDING)  # the next executor calls revert() again
        return
    if current is not None and current.error is not None:
        core._pause(runtime, PlanResult.ERROR)
        return
    if current is None:
        left = to_revert(runtime)
        if not left:
            core._stop(runtime, PlanResult.REVERTED, "finish execution")
            return
        current = left[0]
    if core.terminating is not None:
        core._pause(runtime, PlanResult.PENDING)  # the next executor reverts it
        return
    runtime.set_step(current, StepState.REVERTING, error=None)
    _dispatch(core, runtime, current)


def _dispatch(core: ExecutorCore, runtime: PlanRuntime, step: Step, event: Any = None) -> bool:
    if step.queue not in core.queues:
        error = ExecutionError(
            f"queue {step.queue!r} is not served by world {core.world_id}: "
            "the revert of its action cannot run here"
        )
        runtime.set_step(step, StepState.REVERTING, error=StepError.from_exception(error))
        core._pause(runtime, PlanResult.ERROR)
        return False
    action = runtime.actions[step.action_id]
    runtime.reverting.add(step.id)
    core._dispatched(
        Work(
            execution_plan_id=runtime.id,
            step_id=step.id,
            action_id=action.id,
            action_class=action.action_class,
            phase=Phase.REVERT,
            queue=step.queue,
            input=action.input,
            output=dict(action.output),
            event=event,
            sequence=runtime.next_sequence(step.id),
            run=runtime.run,
        )
    )
    return True


def takes_events(runtime: PlanRuntime, step: Step) -> bool:
    """An event for a ``reverting`` step is taken while its revert runs (delivered
    once it suspends) or waits suspended."""
    return step.id in runtime.reverting or step.id in runtime.suspended_reverts


def deliver_next(core: ExecutorCore, runtime: PlanRuntime, step_id: int) -> None:
    """Hand the oldest event waiting for a suspended revert to it: ``revert(event)``."""
    waiting = runtime.events.get(step_id)
    if not waiting or step_id not in runtime.suspended_reverts:
        return  # still running: delivered when it suspends
    if core.terminating is not None:
        core._drop_events(runtime, step_id, f"world {core.world_id} is terminating")
        return
    event = waiting.popleft()
    runtime.suspended_reverts.discard(step_id)
    if _dispatch(core, runtime, runtime.steps[step_id], event.payload):
        core._later(partial(resolve, event.future, True), runtime.id)
    else:
        core._refuse(event, ExecutionError(str(runtime.steps[step_id].error)))


def done(core: ExecutorCore, runtime: PlanRuntime, step: Step, report: StepDone) -> None:
    """A worker's report of a revert: the step is ``reverted``, its revert failed, or it
    suspended (it waits for an event: one already here is handed to it at once)."""
    runtime.reverting.discard(step.id)
    execution_time = step.execution_time + report.execution_time
    if report.state is StepState.SUSPENDED:
        runtime.set_step(step, StepState.REVERTING, execution_time=execution_time)
        runtime.suspended_reverts.add(step.id)
        deliver_next(core, runtime, step.id)
        return
    core._drop_events(runtime, step.id, f"the revert of step {step.id} ended")
    if report.state is StepState.SUCCESS:
        runtime.set_step(step, StepState.REVERTED, error=None, execution_time=execution_time)
        return
    error = report.error or StepError(class_name(ExecutionError), "revert did not end")
    runtime.set_step(step, StepState.REVERTING, error=error, execution_time=execution_time)


def mark(core: ExecutorCore, plan_id: str, future: Future[ExecutionPlan]) -> None:
    """``world.revert`` on an adopted (paused or stopped) plan: turn it to reverting and
    let it go paused, for the executor its caller hands it to (its execution lock stays
    held); or stop it ``reverted`` at once when nothing is to be reverted."""
    runtime = core.adopted.pop(plan_id, None)
    if runtime is None or runtime.plan.state not in (PlanState.PAUSED, PlanState.STOPPED):
        core._fail(future, ExecutionError(f"execution plan {plan_id} is not paused here"))
        return
    core.plans[plan_id] = runtime
    runtime.futures.append(future)
    if not active(runtime):
        begin(core, runtime)
    left = any(s.state is StepState.REVERTING for s in runtime.steps.values())
    if not left and not to_revert(runtime):
        core._stop(runtime, PlanResult.REVERTED, "finish execution")
        return
    runtime.set_state(PlanState.PAUSED, PlanResult.PENDING, ended_at=None)
    core._let_go(core.plans.pop(plan_id))
