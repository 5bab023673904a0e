"""The ``Action`` base class users subclass."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from dynflow.action import registry
from dynflow.action.limits import Limit, check_limits
from dynflow.action.references import OutputReference
from dynflow.action.retry import Retry, check_action_options
from dynflow.action.suspended import Suspend, SuspendedAction
from dynflow.errors import DynflowError
from dynflow.execution_plan.states import Phase

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dynflow.action.world import ActionWorld
    from dynflow.execution_plan.builder import PlanBuilder
    from dynflow.middleware import Middleware


class Rescue(StrEnum):
    """What happens to a plan when this action's step fails (with ``auto_rescue``)."""

    PAUSE = "pause"
    SKIP = "skip"
    FAIL = "fail"
    #: revert the plan (every succeeded action's ``revert``): it ends ``reverted``
    REVERT = "revert"


def combine_rescue(strategies: Sequence[Rescue]) -> Rescue:
    """All SKIP -> SKIP, all FAIL -> FAIL, all REVERT -> REVERT, otherwise PAUSE."""
    kinds = set(strategies)
    if len(kinds) == 1 and (kind := next(iter(kinds))) is not Rescue.PAUSE:
        return kind
    return Rescue.PAUSE


class _Label:
    """``Action.label``: the class-level ``label`` string, else ``humanized_name()``."""

    def __get__(self, instance: object, owner: type[Action]) -> str:
        return owner.humanized_name()


@dataclass
class PhaseContext:
    """What an action instance knows about where and how it runs."""

    world: ActionWorld
    execution_plan_id: str
    phase: Phase
    builder: PlanBuilder | None = None
    step_id: int | None = None
    transaction: Any = None
    report_progress: Callable[[float], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedAction:
    """A child planned with ``plan_action``: its id, input and output reference."""

    id: int
    action_class: type[Action]
    input: Mapping[str, Any]

    @property
    def output(self) -> OutputReference:
        """A reference to the child's output: ``planned.output["key"]`` is resolved when
        the step that uses it runs, and orders that step after the child's."""
        return OutputReference(self.id, self.action_class.__name__)


class Action:
    """A unit of work with ``plan``, ``run`` and ``finalize`` phases.

    Override ``plan`` to decide what runs (``plan_self``, ``plan_action``,
    ``sequence``/``concurrence``), ``run`` to do the work and ``finalize`` for
    the last, ordered phase.

    Class attributes a subclass may set:

    - ``queue``: the queue whose workers run the run phase (``"default"``).
    - ``rescue_strategy``: what a failure does to the plan with ``auto_rescue``
      (``Rescue.PAUSE``, ``SKIP`` or ``FAIL``).
    - ``idempotent``: True to run the step again, rather than fail it, after its
      executor died while it ran.
    - ``retry``: a ``Retry`` for failed runs; ``run_timeout``: seconds one attempt of
      ``run`` may take before it fails with ``StepTimeout``.
    - ``label``: the plan's label when this is the entry action (default: the class
      name in words, ``humanized_name()``).
    - ``Input``: a pydantic model that validates the input when it is planned.
    - ``progress_weight``: the weight of its run step in the plan's progress (1.0).
    - ``middleware``: middleware classes around its phases.
    """

    rescue_strategy: ClassVar[Rescue] = Rescue.PAUSE
    queue: ClassVar[str] = "default"
    idempotent: ClassVar[bool] = False
    label: ClassVar[str] = _Label()  # type: ignore[assignment]
    middleware: ClassVar[Sequence[type[Middleware]]] = ()
    Input: ClassVar[type[BaseModel] | None] = None
    progress_weight: ClassVar[float] = 1.0
    #: run a failed ``run`` again (see :class:`dynflow.Retry`); None: fail at once
    retry: ClassVar[Retry | None] = None
    #: seconds an attempt of ``run`` may take before it fails with ``StepTimeout``
    run_timeout: ClassVar[float | None] = None
    #: limits its run steps share with other steps (see :class:`dynflow.Limit`)
    limits: ClassVar[Sequence[Limit]] = ()
    #: set by ``dynflow.testing.run_action``: True when ``run`` ended by suspending
    suspended: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_action_options(cls, cls.retry, cls.run_timeout)
        check_limits(cls, cls.limits, cls.Input)
        registry.register(cls)

    def __init__(
        self,
        context: PhaseContext,
        action_id: int,
        input: Mapping[str, Any] | None = None,
        output: dict[str, Any] | None = None,
    ) -> None:
        self._context = context
        self.id = action_id
        self._input: Any = input
        self._output: dict[str, Any] = output if output is not None else {}

    # -- identity -------------------------------------------------------------

    @classmethod
    def humanized_name(cls) -> str:
        """``CreateVM`` -> ``Create VM``; override ``label`` to choose your own."""
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", cls.__name__)

    @classmethod
    def class_name(cls) -> str:
        return registry.class_name(cls)

    @classmethod
    def has_phase(cls, phase: Phase) -> bool:
        return getattr(cls, phase.value) is not getattr(Action, phase.value)

    @classmethod
    def check_planned_input(cls, input: Mapping[str, Any]) -> None:
        """Called with the input given to ``plan_self``: raise to fail planning."""

    @classmethod
    def has_async_run(cls) -> bool:
        return inspect.iscoroutinefunction(cls.run)

    @classmethod
    def has_async_revert(cls) -> bool:
        return inspect.iscoroutinefunction(cls.revert)

    @property
    def execution_plan_id(self) -> str:
        """The id of the plan this action belongs to."""
        return self._context.execution_plan_id

    @property
    def step_id(self) -> int | None:
        """The id of the step being run (run and finalize phases), else None."""
        return self._context.step_id

    @property
    def world(self) -> ActionWorld:
        """The engine as an action sees it: its clock and the operations on plans."""
        return self._context.world

    @property
    def phase(self) -> Phase:
        """The phase being run: ``plan``, ``run`` or ``finalize``."""
        return self._context.phase

    @property
    def transaction(self) -> Any:
        """The application's transaction (connection or session) in plan and finalize.

        Set when the world was given ``transaction_adapter=``; ``None`` otherwise.
        """
        return self._context.transaction

    # -- data -----------------------------------------------------------------

    @property
    def input(self) -> Any:
        """The input: a mutable dict while planning, a read-only mapping afterwards."""
        if self._input is None:
            return {}
        return self._input

    @property
    def output(self) -> Any:
        """Mutable output dict in run/finalize; while planning, a reference to it."""
        if self._context.phase is Phase.PLAN:
            return OutputReference(self.id, type(self).__name__)
        return self._output

    # -- planning -------------------------------------------------------------

    def plan(self, *args: Any, **kwargs: Any) -> None:
        """Default: ``plan_self(**kwargs)``, or ``plan_self(args[0])`` given one dict."""
        if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
            self.plan_self(args[0])
        elif args:
            raise TypeError(
                f"{type(self).__name__}.plan() got positional arguments {args!r}: "
                "pass keyword arguments or one dict, or override plan()"
            )
        else:
            self.plan_self(**kwargs)

    def _builder(self) -> PlanBuilder:
        builder = self._context.builder
        if builder is None:
            raise DynflowError(f"{type(self).__name__}: planning calls are only valid in plan()")
        return builder

    def plan_self(self, input: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Put this action's own run and/or finalize phase into the plan."""
        self._builder().plan_self(self, {**(input or {}), **kwargs})

    def plan_action(self, action_class: type[Action], *args: Any, **kwargs: Any) -> PlannedAction:
        """Plan a child action now (its ``plan`` runs at once)."""
        return self._builder().plan_action(action_class, args, kwargs, parent=self)

    @contextmanager
    def sequence(self) -> Iterator[None]:
        """Actions planned inside run one after another."""
        with self._builder().sequence():
            yield

    @contextmanager
    def concurrence(self) -> Iterator[None]:
        """Actions planned inside may run at the same time (the default)."""
        with self._builder().concurrence():
            yield

    # -- running --------------------------------------------------------------

    def run(self, event: Any = None) -> Any:
        """Do the work. Override it (``async def`` works too)."""

    def finalize(self) -> None:
        """Runs after every run step of the plan succeeded. Override it."""

    def revert(self) -> None:
        """Undo what ``run`` did (``world.revert``, ``Rescue.REVERT``). Override it; it
        may run more than once (a retry, a recovery), so make it idempotent. An action
        that does not override it has nothing to undo: its step stays ``success``.

        It may ``suspend()`` too: it is then called again as ``revert(event)`` with
        each event delivered to its step (the step stays ``reverting``)."""

    def suspend(self, callback: Callable[[SuspendedAction], Any] | None = None) -> NoReturn:
        """End this run (or revert) call; the step waits, ``suspended``, for an event
        (a revert's step stays ``reverting``, and its next call is ``revert(event)``).

        ``callback`` receives a ``SuspendedAction`` (plan id, step id,
        ``.event(payload)``) once the step can take events: register the
        webhook or hand the ids to whoever will answer there.
        """
        if self._context.phase not in (Phase.RUN, Phase.REVERT):
            raise DynflowError(
                f"{type(self).__name__}: suspend() is only valid in run() and revert()"
            )
        raise Suspend(callback)

    def plan_event(self, payload: Any = None, delay: float = 0.0) -> None:
        """Send ``payload`` to this step after ``delay`` seconds (through the world's clock)."""
        world, plan_id, step_id = self._require_step("plan_event")

        def send() -> None:
            world.event(plan_id, step_id, payload, optional=True)

        world.clock.schedule(delay, send)

    def schedule_timeout(self, seconds: float) -> None:
        """Fail this step with a timeout if it is still suspended, with no event delivered
        since this run call, after ``seconds``."""
        world, plan_id, step_id = self._require_step("schedule_timeout")
        sequence = self._context.extra.get("sequence", 0)
        world.clock.schedule(
            seconds, lambda: world.schedule_step_timeout(plan_id, step_id, sequence, seconds)
        )

    def _require_step(self, what: str) -> tuple[ActionWorld, str, int]:
        step_id = self._context.step_id
        if self._context.phase is not Phase.RUN or step_id is None or self.world is None:
            raise DynflowError(f"{type(self).__name__}: {what}() is only valid in run()")
        return self.world, self.execution_plan_id, step_id

    def report_progress(self, done: float) -> None:
        """Report how much of this step is done (0.0-1.0) while it runs."""
        if self._context.report_progress is not None:
            self._context.report_progress(min(max(float(done), 0.0), 1.0))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} in {self.execution_plan_id}>"
