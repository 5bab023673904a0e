"""Planning: run the actions' ``plan`` methods and build the execution plan."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dynflow.action.base import Action, PhaseContext, PlannedAction
from dynflow.action.limits import check_planned_input
from dynflow.action.references import to_marker_or_refuse
from dynflow.action.singleton import SINGLETON_LOCK, Singleton
from dynflow.director import PlanShape, find_unreachable
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import (
    ActionRecord,
    ExecutionPlan,
    PlanAttributes,
    PlanDetails,
    Step,
    StepError,
)
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.flows import Atom, Concurrence, Flow, simplify
from dynflow.flows import Sequence as SequenceFlow
from dynflow.middleware import Middleware, call_chain
from dynflow.serialization import (
    DEFAULT_MAX_VALUE_BYTES,
    check_size,
    find_refs,
    storable_text,
    to_json_value,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dynflow.action.world import ActionWorld
    from dynflow.observe.tracing import Tracing


class PlanPhaseError(DynflowError):
    """Raised out of planning; the failing plan step already holds the error."""

    def __init__(self, message: str, error: StepError) -> None:
        super().__init__(message)
        self.error = error


@dataclass
class _Action:
    id: int
    cls: type[Action]
    label: str
    parent_id: int | None
    input: dict[str, Any] = field(default_factory=dict)
    plan_step_id: int | None = None
    run_step_id: int | None = None
    finalize_step_id: int | None = None
    planned_self: bool = False


@dataclass
class _Step:
    id: int
    action: _Action
    phase: Phase
    state: StepState
    queue: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    execution_time: float = 0.0
    error: StepError | None = None


def requires_from_inputs(
    inputs: Mapping[int, Any], run_steps: Mapping[int, int | None]
) -> dict[int, frozenset[int]]:
    """Run step id -> run step ids it waits for, from output references in inputs."""
    requires: dict[int, frozenset[int]] = {}
    for action_id, value in inputs.items():
        step_id = run_steps.get(action_id)
        if step_id is None:
            continue
        needed = frozenset(
            s for ref in find_refs(value) if ref != action_id and (s := run_steps.get(ref))
        )
        if needed:
            requires[step_id] = needed
    return requires


class PlanBuilder:
    """Builds one execution plan by calling ``plan`` on the entry action and its children."""

    def __init__(
        self,
        world: ActionWorld,
        middleware: Sequence[type[Middleware]] = (),
        *,
        execution_plan_id: str | None = None,
        transaction: Any = None,
    ) -> None:
        self.world = world
        self.id = execution_plan_id or str(uuid.uuid4())
        self.middleware = tuple(middleware)
        self.transaction = transaction
        self.actions: list[_Action] = []
        self.steps: list[_Step] = []
        self.finalize_steps: list[int] = []
        self._flows: list[Concurrence | SequenceFlow] = [Concurrence()]
        self.started_at = datetime.now(UTC)
        self.run_flow: Flow = Concurrence()
        self.requires: dict[int, frozenset[int]] = {}
        self.error: StepError | None = None
        #: set for a sub-plan: the plan and action that triggered it
        self.caller: tuple[str, int] | None = None
        #: trigger options and code version, stamped on the plan
        self.attributes = PlanAttributes()
        #: class names of the singleton actions planned
        self.singletons: list[str] = []
        #: spans of the plan phases (None: no tracing), and the context the plan carries
        self.tracing: Tracing | None = None
        self.trace_context: dict[str, str] | None = None
        #: the largest input of an action, in bytes of JSON
        self.max_value_bytes = DEFAULT_MAX_VALUE_BYTES

    # -- called by actions while planning ----------------------------------------

    def plan_action(
        self,
        action_class: type[Action],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        parent: Action | None = None,
    ) -> PlannedAction:
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise DynflowError(f"plan_action expects an Action subclass, got {action_class!r}")
        record = _Action(
            id=len(self.actions) + 1,
            cls=action_class,
            label=action_class.__name__,
            parent_id=parent.id if parent else None,
        )
        self.actions.append(record)
        if issubclass(action_class, Singleton) and action_class.class_name() not in self.singletons:
            self.singletons.append(action_class.class_name())
        step = self._add_step(record, Phase.PLAN, StepState.RUNNING)
        record.plan_step_id = step.id
        context = PhaseContext(
            self.world, self.id, Phase.PLAN, builder=self, transaction=self.transaction
        )
        action = action_class(context, record.id, input=record.input)
        own_flow = Concurrence()
        self._flows.append(own_flow)
        started = time.monotonic()
        span = None
        if self.tracing is not None:
            span = self.tracing.step_started(
                self.id, step.id, action_class.class_name(), str(Phase.PLAN), planning=True
            )
        try:
            chain = [*self.middleware, *action_class.middleware]
            call_chain(
                chain,
                action,
                "plan_phase",
                lambda *a, **kw: call_chain(chain, action, "plan", action.plan, *a, **kw),
                *args,
                **kwargs,
            )
        except PlanPhaseError:
            step.state = StepState.ERROR
            raise
        except Exception as exc:
            step.state = StepState.ERROR
            step.error = StepError.from_exception(exc)
            self.error = step.error
            raise PlanPhaseError(
                f"{action_class.__name__}: {step.error.message}", step.error
            ) from exc
        finally:
            self._flows.pop()
            step.execution_time = time.monotonic() - started
            step.ended_at = datetime.now(UTC)
            if span is not None:
                failed = step.state is StepState.ERROR
                span.finish("error" if failed else "success", str(step.error) if failed else None)
        step.state = StepState.SUCCESS
        record.label = storable_text(str(action.label))  # may depend on the input
        self._flows[-1].flows.append(own_flow)
        return PlannedAction(record.id, action_class, record.input)

    def plan_self(self, action: Action, raw_input: dict[str, Any]) -> None:
        record = self.actions[action.id - 1]
        cls = record.cls
        if record.planned_self:
            raise DynflowError(f"{cls.__name__}.plan_self() called twice")
        record.planned_self = True
        value = to_json_value(raw_input, f"{cls.__name__} input", on_unknown=to_marker_or_refuse)
        record.input.update(_validate_input(cls.Input, value, cls.__name__))
        check_size(record.input, self.max_value_bytes, f"{cls.__name__} input")
        cls.check_planned_input(record.input)
        if cls.limits:
            check_planned_input(cls, cls.limits, record.input)
        if cls.has_phase(Phase.RUN):
            step = self._add_step(record, Phase.RUN, StepState.PENDING)
            record.run_step_id = step.id
            self._flows[-1].flows.append(Atom(step.id))
        if cls.has_phase(Phase.FINALIZE):
            step = self._add_step(record, Phase.FINALIZE, StepState.PENDING)
            record.finalize_step_id = step.id
            self.finalize_steps.append(step.id)

    @contextmanager
    def sequence(self) -> Iterator[None]:
        with self._nested(SequenceFlow()):
            yield

    @contextmanager
    def concurrence(self) -> Iterator[None]:
        with self._nested(Concurrence()):
            yield

    @contextmanager
    def _nested(self, flow: Concurrence | SequenceFlow) -> Iterator[None]:
        self._flows[-1].flows.append(flow)
        self._flows.append(flow)
        try:
            yield
        finally:
            self._flows.pop()

    def _add_step(self, action: _Action, phase: Phase, state: StepState) -> _Step:
        step = _Step(
            id=len(self.steps) + 1,
            action=action,
            phase=phase,
            state=state,
            queue=action.cls.queue,
            started_at=datetime.now(UTC) if phase is Phase.PLAN else None,
        )
        self.steps.append(step)
        return step

    # -- driving -------------------------------------------------------------------

    def build(
        self, action_class: type[Action], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """Plan the entry action; raises :class:`PlanPhaseError` on failure."""
        self.plan_action(action_class, args, kwargs)
        self.run_flow = simplify(self._flows[0])
        inputs = {a.id: a.input for a in self.actions}
        self.requires = requires_from_inputs(inputs, {a.id: a.run_step_id for a in self.actions})
        # without output references every flow can run: only references can form a cycle
        stuck = find_unreachable(self.shape()) if self.requires else []
        if stuck:
            error = StepError(
                "dynflow.errors.PlanningFailed",
                f"steps {stuck} can never run: their output references form a cycle "
                "or point to actions planned later in a sequence",
            )
            self.fail_entry(error)
            raise PlanPhaseError(error.message, error)

    def schedule(self, action_class: type[Action]) -> None:
        """Record only the entry action, its plan step ``pending``: a plan to plan later.

        Planning it later (a builder with the same ``execution_plan_id``) produces the
        same entry action and plan step ids (1), with everything else.
        """
        label = action_class.label
        record = _Action(
            id=1,
            cls=action_class,
            label=storable_text(label if isinstance(label, str) else action_class.humanized_name()),
            parent_id=None,
        )
        self.actions.append(record)
        step = self._add_step(record, Phase.PLAN, StepState.PENDING)
        step.started_at = None
        record.plan_step_id = step.id

    def record_failure(self, exc: Exception) -> str:
        """Note why planning failed on the entry plan step; the message for the caller."""
        if isinstance(exc, PlanPhaseError):  # the failing plan step holds the error already
            return str(exc)
        # e.g. the application's transaction failed to commit
        error = StepError.from_exception(exc)
        self.fail_entry(error)
        return str(error)

    def singleton_locks(self) -> list[dict[str, Any]]:
        """Coordinator rows for the singleton actions of this plan (owned by the plan)."""
        return [
            {"class": SINGLETON_LOCK, "id": name, "owner_id": self.id, "data": {}}
            for name in self.singletons
        ]

    def fail_entry(self, error: StepError) -> None:
        """Put ``error`` on the entry action's plan step (the plan will not run)."""
        self.error = error
        if self.steps:
            self.steps[0].error = error
            self.steps[0].state = StepState.ERROR

    def shape(self) -> PlanShape:
        return PlanShape(self.run_flow, tuple(self.finalize_steps), self.requires)

    @property
    def label(self) -> str:
        return self.actions[0].label if self.actions else ""

    def plan(self, state: PlanState, result: PlanResult) -> ExecutionPlan:
        """The plan as built, in ``state``/``result``, with its steps and actions (no
        history yet): what persistence saves and callers get back."""
        plan = ExecutionPlan(
            id=self.id,
            label=self.label,
            state=state,
            result=result,
            ended_at=datetime.now(UTC) if state is PlanState.STOPPED else None,
            caller_execution_plan_id=self.caller[0] if self.caller else None,
            caller_action_id=self.caller[1] if self.caller else None,
            run_flow=self.run_flow,
            finalize_flow=tuple(self.finalize_steps),
            trace_context=self.trace_context,
            requires=dict(self.requires),
        )
        self.attributes.apply(plan)
        actions = [
            ActionRecord(
                id=a.id,
                action_class=a.cls.class_name(),
                input=a.input,
                output={},
                label=a.label,
                plan_step_id=a.plan_step_id,
                run_step_id=a.run_step_id,
                finalize_step_id=a.finalize_step_id,
                parent_action_id=a.parent_id,
            )
            for a in self.actions
        ]
        steps = {
            s.id: Step(
                id=s.id,
                action_id=s.action.id,
                action_class=s.action.cls.class_name(),
                phase=s.phase,
                state=s.state,
                queue=s.queue,
                error=s.error,
                started_at=s.started_at,
                ended_at=s.ended_at,
                execution_time=s.execution_time,
                real_time=s.execution_time,
                progress_done=1.0
                if s.state is StepState.SUCCESS and s.phase is Phase.PLAN
                else 0.0,
                progress_weight=s.action.cls.progress_weight,
            )
            for s in self.steps
        }
        plan._details = PlanDetails(steps=steps, actions=actions, history=[])
        return plan


def _validate_input(
    model: type[BaseModel] | None, value: dict[str, Any], name: str
) -> dict[str, Any]:
    """Validate with the action's ``Input`` model unless the input holds references."""
    if model is None or find_refs(value):
        return value
    from pydantic import ValidationError

    try:
        validated = model.model_validate(value)
    except ValidationError as exc:
        raise DynflowError(f"{name} input is invalid: {exc}") from None
    dumped: dict[str, Any] = validated.model_dump(mode="json")
    return dumped
