"""What the registered action classes decide for the executor: singleton locks,
rescue strategy, idempotence, attributes; and skipping a failed step."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from dynflow.action import registry
from dynflow.action.base import Action, Rescue, combine_rescue
from dynflow.action.registry import class_name
from dynflow.action.singleton import SINGLETON_LOCK, Singleton
from dynflow.errors import DynflowError, ExecutionError, NotFound
from dynflow.execution_plan.model import Step, StepError
from dynflow.execution_plan.states import PlanState, StepState
from dynflow.executor.messages import DeliverEvent
from dynflow.executor.runtime import PlanRuntime, now

ABNORMAL = "Abnormal termination (previous state: {state})"


def action_class(runtime: PlanRuntime, action_id: int) -> type[Action] | None:
    """The registered class of an action of the plan (None if it is not registered)."""
    return _lookup(runtime.actions[action_id].action_class)


def action_attribute(runtime: PlanRuntime, action_id: int, name: str) -> Any:
    """A class attribute of an action of the plan (None if missing or unregistered)."""
    return getattr(action_class(runtime, action_id), name, None)


def enqueue(runtime: PlanRuntime, step_id: int, event: DeliverEvent) -> bool:
    """Queue an event for a step; True when it was merged into one already waiting
    instead: an optional event that is the action's ``resume_event`` (a wake-up, such
    as ``WithSubPlans``'s: the step reads again what it waits for) while the same one
    waits, not delivered yet (so the step reads after this one came)."""
    waiting = runtime.events.setdefault(step_id, deque())
    if event.optional and waiting:
        wake = action_attribute(runtime, runtime.steps[step_id].action_id, "resume_event")
        if (
            wake is not None
            and event.payload == wake
            and any(other.optional and other.payload == wake for other in waiting)
        ):
            return True
    waiting.append(event)
    return False


def singleton_locks(runtime: PlanRuntime) -> list[tuple[str, str, str]]:
    """The singleton locks a stopping plan releases: (class, action class name, plan id)."""
    names = {a.action_class for a in runtime.actions.values()}
    return [
        (SINGLETON_LOCK, name, runtime.id)
        for name in sorted(names)
        if (cls := _lookup(name)) is not None and issubclass(cls, Singleton)
    ]


def skip_step(runtime: PlanRuntime, step_id: int) -> None:
    """Mark a failed step skipped, and pending steps that need its output with it (a
    failed revert: only the step, its revert given up)."""
    step = runtime.steps[step_id]
    reverting = step.state is StepState.REVERTING
    runtime.set_step(step, StepState.SKIPPED, ended_at=step.ended_at if reverting else now())
    if reverting:
        return
    for dependent in sorted(runtime.shape.dependents(step_id)):
        other = runtime.steps[dependent]
        if other.state in (StepState.PENDING, StepState.ERROR):
            runtime.set_step(other, StepState.SKIPPED)


def warned(runtime: PlanRuntime) -> bool:
    """True when a plan that finished ends ``warning``: a step was skipped, or an
    action says its success came with warnings (``WithSubPlans``: a child did)."""
    for step in runtime.steps.values():
        if step.state is StepState.SKIPPED:
            return True
    for action in runtime.actions.values():
        check = getattr(_lookup(action.action_class), "ended_with_warning", None)
        if check is not None and check(action.output):
            return True
    return False


def interrupted(runtime: PlanRuntime, step: Step) -> None:
    """Fail a step its executor left running; an idempotent one is to run again at once."""
    error = StepError(class_name(ExecutionError), ABNORMAL.format(state=step.state))
    runtime.set_step(step, StepState.ERROR, error=error, ended_at=now())
    if idempotent(runtime.actions[step.action_id].action_class):
        runtime.set_step(step, StepState.PENDING, error=None, ended_at=None)


def rescue_strategy(runtime: PlanRuntime, failed: Iterable[Step]) -> Rescue:
    """How the classes of the failed steps' actions want the failure handled (an
    unregistered class pauses the plan)."""
    classes = [action_class(runtime, step.action_id) for step in failed]
    return combine_rescue([Rescue.PAUSE if c is None else c.rescue_strategy for c in classes])


def idempotent(name: str) -> bool:
    """True when the action class may run again after an interrupted run."""
    cls = _lookup(name)
    return cls is not None and cls.idempotent


def _lookup(name: str) -> type[Action] | None:
    try:
        return registry.lookup(name)
    except DynflowError:
        return None


def has_running(runtime: PlanRuntime) -> bool:
    """True while a step of the plan is running."""
    return any(s.state is StepState.RUNNING for s in runtime.steps.values())


def cannot_skip(runtime: PlanRuntime | None, plan_id: str, step_id: int) -> DynflowError | None:
    """Why the step of an adopted plan cannot be skipped, or None when it can."""
    step = None if runtime is None else runtime.steps.get(step_id)
    if runtime is None or runtime.plan.state is not PlanState.PAUSED:
        return ExecutionError(f"execution plan {plan_id} is not paused here")
    if step is None:
        return NotFound(f"execution plan {plan_id} has no step {step_id}")
    failed_revert = step.state is StepState.REVERTING and step.error is not None
    if step.state is not StepState.ERROR and not failed_revert:
        return ExecutionError(
            f"step {step_id} of execution plan {plan_id} is {step.state}: "
            "only a failed step can be skipped (a failed run or a failed revert)"
        )
    return None
