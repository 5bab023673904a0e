"""Unit-test single actions without a world: plan, run and finalize them one at a time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dynflow.action.base import Action, PhaseContext, PlannedAction
from dynflow.action.references import OutputReference, to_marker_or_refuse
from dynflow.action.suspended import Suspend, SuspendedAction
from dynflow.clock import ManualClock
from dynflow.execution_plan.states import Phase
from dynflow.futures import resolved
from dynflow.serialization import find_refs, freeze, resolve_refs, to_json_value


@dataclass
class PlannedStub:
    """A child that ``plan_action`` recorded instead of planning it.

    Fill ``fake_output`` to give references to this child a value in ``run_action``.
    """

    id: int
    action_class: type[Action]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    fake_output: dict[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> OutputReference:
        return OutputReference(self.id, self.action_class.__name__)

    @property
    def input(self) -> Mapping[str, Any]:
        return {}


class _RecordingBuilder:
    """Stands in for the plan builder: records what the action plans."""

    def __init__(self, action_id: int) -> None:
        self.next_id = action_id + 1
        self.planned: list[PlannedStub] = []
        self.input: dict[str, Any] | None = None

    def plan_self(self, action: Action, raw: dict[str, Any]) -> None:
        self.input = to_json_value(
            raw, f"{type(action).__name__} input", on_unknown=to_marker_or_refuse
        )

    def plan_action(
        self,
        cls: type[Action],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        parent: Action | None = None,
    ) -> PlannedAction:
        stub = PlannedStub(self.next_id, cls, tuple(args), dict(kwargs))
        self.next_id += 1
        self.planned.append(stub)
        return PlannedAction(stub.id, cls, stub.input)

    @contextmanager
    def sequence(self) -> Iterator[None]:
        yield

    @contextmanager
    def concurrence(self) -> Iterator[None]:
        yield


class UnitWorld:
    """The world of actions run by ``run_action``: what they send is kept, not sent.

    ``clock`` is a ``ManualClock``: ``self.plan_event(...)`` (a
    ``Polling`` action's next poll) waits on it until ``clock.advance(seconds)``, then
    lands in ``events`` as (plan id, step id, payload); hand a payload back with
    ``run_action(action, event=payload)``. Anything else an action asks of the world
    needs a real one: pass ``world=`` (e.g. an ``InThreadWorld``).
    """

    id = "dynflow.testing"

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.events: list[tuple[str, int, Any]] = []

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any = None, *, optional: bool = False
    ) -> Future[Any]:
        self.events.append((execution_plan_id, step_id, payload))
        return resolved(True)

    def schedule_step_timeout(
        self, execution_plan_id: str, step_id: int, sequence: int, seconds: float
    ) -> None:
        """A unit test decides itself when a step times out."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"run_action's world has no {name!r}: pass run_action(action, world=...) a "
            "real world (e.g. InThreadWorld) to use it"
        )


def create_action(action_class: type[Action], trigger: Any = None, world: Any = None) -> Action:
    """An action instance ready for ``plan_action`` (``trigger``: a parent action)."""
    plan_id = getattr(trigger, "execution_plan_id", None) or str(uuid.uuid4())
    action_id = getattr(trigger, "id", 0) + 1
    builder = _RecordingBuilder(action_id)
    context = PhaseContext(world, plan_id, Phase.PLAN, builder=builder)  # type: ignore[arg-type]
    action = action_class(context, action_id, input={})
    action._testing_builder = builder  # type: ignore[attr-defined]
    return action


def plan_action(action: Action, *args: Any, **kwargs: Any) -> Action:
    """Call ``action.plan(*args, **kwargs)``; children are recorded, not planned."""
    action.plan(*args, **kwargs)
    builder = _builder(action)
    if builder.input is not None:
        action._input = builder.input
    return action


def planned_actions(action: Action) -> list[PlannedStub]:
    """The children ``action`` planned, in order."""
    return list(_builder(action).planned)


def run_action(planned: Action, event: Any = None, **context: Any) -> Action:
    """Run the planned action's ``run`` with its input; returns the action to inspect.

    An action that suspends comes back with ``.suspended`` True and its output as far
    as it got (its ``suspend`` callback is called, as the engine would); pass it back
    with ``event=payload`` to deliver an event to it.
    """
    resolved = _resolved_input(planned)
    action = _phase_instance(planned, Phase.RUN, resolved, dict(planned._output), context)
    try:
        if event is None:
            action.run()
        else:
            action.run(event)
    except Suspend as suspend:
        action.suspended = True
        if suspend.callback is not None:
            suspend.callback(SuspendedAction(action.world, action.execution_plan_id, 1))
    to_json_value(action._output, f"{type(action).__name__} output")
    return action


def finalize_action(ran: Action, **context: Any) -> Action:
    """Run ``finalize`` of an action (planned or already run)."""
    action = _phase_instance(ran, Phase.FINALIZE, _resolved_input(ran), dict(ran._output), context)
    action.finalize()
    return action


def assert_action_planned(action: Action, action_class: type[Action]) -> PlannedStub:
    """Assert ``action`` planned a child of ``action_class``; returns the first one."""
    for stub in _builder(action).planned:
        if stub.action_class is action_class:
            return stub
    planned = [s.action_class.__name__ for s in _builder(action).planned]
    raise AssertionError(f"{action_class.__name__} was not planned; planned: {planned}")


def assert_action_planned_with(
    action: Action, action_class: type[Action], *args: Any, **kwargs: Any
) -> PlannedStub:
    """Assert ``action`` planned ``action_class`` with exactly these arguments."""
    candidates = [s for s in _builder(action).planned if s.action_class is action_class]
    for stub in candidates:
        if stub.args == args and stub.kwargs == kwargs:
            return stub
    seen = [(s.args, s.kwargs) for s in candidates]
    raise AssertionError(
        f"{action_class.__name__} was not planned with args={args!r} kwargs={kwargs!r}; "
        f"planned with: {seen or 'nothing'}"
    )


def assert_run_phase(action: Action, input: Mapping[str, Any] | None = None) -> None:
    """Assert the action planned its run phase (and, if given, with this input)."""
    if _builder(action).input is None or not type(action).has_phase(Phase.RUN):
        raise AssertionError(f"{type(action).__name__} did not plan its run phase")
    if input is not None:
        expected = to_json_value(input, "expected input", on_unknown=to_marker_or_refuse)
        if action._input != expected:
            raise AssertionError(f"run phase input {action._input!r} != expected {expected!r}")


def assert_finalize_phase(action: Action) -> None:
    """Assert the action planned its finalize phase."""
    if _builder(action).input is None or not type(action).has_phase(Phase.FINALIZE):
        raise AssertionError(f"{type(action).__name__} did not plan its finalize phase")


def _builder(action: Action) -> _RecordingBuilder:
    builder = getattr(action, "_testing_builder", None)
    if builder is None:
        raise TypeError(f"{action!r} was not made by dynflow.testing.create_action")
    assert isinstance(builder, _RecordingBuilder)
    return builder


def _resolved_input(action: Action) -> Any:
    raw = action._input
    if raw is None:
        return {}
    raw = to_json_value(raw, "input")
    if not find_refs(raw):
        return raw
    outputs = {stub.id: stub.fake_output for stub in _builder(action).planned}
    outputs[action.id] = action._output
    return resolve_refs(raw, lambda aid: outputs.get(aid, {}))


def _phase_instance(
    source: Action, phase: Phase, input: Any, output: dict[str, Any], extra: dict[str, Any]
) -> Action:
    world = extra.get("world", source.world)
    if world is None and phase is Phase.RUN:
        world = UnitWorld()
    context = PhaseContext(
        world,
        source.execution_plan_id,
        phase,
        step_id=1,
        transaction=extra.get("transaction"),
    )
    action = type(source)(context, source.id, input=freeze(input), output=output)
    action._testing_builder = _builder(source)  # type: ignore[attr-defined]
    return action
