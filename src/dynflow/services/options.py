"""Trigger options: ``world.options(key=..., after=..., priority=..., deadline=...,
labels=...)`` and its ``trigger``, ``plan`` and ``delay``.

- ``key``: an idempotency key, unique per database (a unique index: the database
  decides between two worlds triggering the same key at once). A key already taken
  plans nothing: the call answers with the plan that has it.
- ``after``: the plan is stored ``scheduled`` and starts once those plans stopped
  (see :mod:`dynflow.services.prerequisites`).
- ``priority``: a higher number starts first among steps waiting in the same queue
  (strict: lower priorities wait while higher ones keep coming), and among delayed
  plans due at the same look.
- ``deadline``: seconds from the call; see :mod:`dynflow.executor.deadlines`.
- ``labels``: str -> str, stored with the plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from dynflow.action.base import Action
from dynflow.errors import ConfigurationError, KeyTaken
from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes
from dynflow.services import prerequisites
from dynflow.services.deadlines import Deadlines
from dynflow.services.waiting import PlanWaiter

if TYPE_CHECKING:
    from dynflow.services.control import PlanControl
    from dynflow.services.delayed import DelayedPlans
    from dynflow.services.finished import FinishedPlans
    from dynflow.services.planning import Planner
    from dynflow.services.ports import Ports

#: the longest idempotency key (the plans table's ``key`` column)
KEY_LENGTH = 255
#: priorities fit the database's 32-bit integer
PRIORITY_RANGE = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class Triggered:
    """A triggered plan: its id, and a future resolved when it stops or pauses."""

    execution_plan_id: str
    finished: Future[ExecutionPlan]


class OptionArguments(TypedDict, total=False):
    """The keyword arguments of ``world.options``."""

    key: str | None
    after: Iterable[str]
    priority: int
    deadline: float | None
    labels: Mapping[str, str] | None


@dataclass(frozen=True)
class TriggerOptions:
    """Checked trigger options (see :func:`check`)."""

    key: str | None = None
    after: tuple[str, ...] = ()
    priority: int = 0
    deadline: float | None = None
    labels: dict[str, str] = field(default_factory=dict)


def check(
    key: str | None = None,
    after: Iterable[str] = (),
    priority: int = 0,
    deadline: float | None = None,
    labels: Mapping[str, str] | None = None,
) -> TriggerOptions:
    """The options, or a :class:`ConfigurationError` saying what is wrong with one."""
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"key must be a non-empty string, got {key!r}")
        if len(key) > KEY_LENGTH:
            raise ConfigurationError(
                f"key is {len(key)} characters long: at most {KEY_LENGTH} are stored "
                "(hash a longer one)"
            )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an integer, got {priority!r}")
    if not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise ConfigurationError(f"priority must fit in 32 bits, got {priority}")
    if deadline is not None and (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not math.isfinite(deadline)
        or deadline <= 0
    ):
        raise ConfigurationError(
            f"deadline must be a number of seconds > 0 (from the trigger), got {deadline!r}"
        )
    if labels is not None and (
        not isinstance(labels, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise ConfigurationError(f"labels must be a dict of str -> str, got {labels!r}")
    return TriggerOptions(
        key,
        prerequisites.normalized(after),
        priority,
        None if deadline is None else float(deadline),
        dict(labels or {}),
    )


class Triggers:
    """The world's side of ``world.options``: plans with options, and waits for plans
    it found by their key."""

    def __init__(
        self,
        ports: Ports,
        control: PlanControl,
        planner: Planner,
        delayed: DelayedPlans,
        finished: FinishedPlans,
    ) -> None:
        self.persistence = ports.persistence
        self.clock = ports.clock
        self.control = control
        self.planner = planner
        self.delayed = delayed
        self.waiter = PlanWaiter(ports)
        finished.listeners.append(self.waiter.finished)
        finished.on_stopped.append(delayed.wake)
        delayed.periodic.append(Deadlines(ports, control, delayed).check)

    def stop(self) -> None:
        """Part of ``world.terminate()``: what is still awaited fails."""
        self.waiter.stop()

    def options(self, **options: Unpack[OptionArguments]) -> Options:
        return Options(self, check(**options))


class Options:
    """``world.options(...)``: ``trigger``, ``plan`` and ``delay`` as the world's, with
    the options applied. A key already taken returns the plan that has it (``trigger``:
    a :class:`Triggered` whose ``.finished`` resolves when that plan stops or pauses)."""

    def __init__(self, triggers: Triggers, options: TriggerOptions) -> None:
        self._triggers = triggers
        self.options = options

    def trigger(self, action_class: type[Action], *args: Any, **kwargs: Any) -> Triggered:
        """Plan and execute (with ``after``: once those plans stopped)."""
        t = self._triggers
        existing = self._existing()
        if existing is not None:
            return Triggered(existing, t.waiter.wait(existing))
        try:
            if self.options.after:
                plan = t.delayed.delay(
                    action_class,
                    0,
                    args,
                    kwargs,
                    attributes=self._attributes(),
                    after=self.options.after,
                )
                return Triggered(plan.id, t.waiter.wait(plan.id))
            plan_id, future = t.control.trigger(action_class, args, kwargs, self._attributes())
        except KeyTaken as exc:
            return Triggered(self._taken(exc), t.waiter.wait(exc.execution_plan_id))
        return Triggered(plan_id, future)

    def plan(self, action_class: type[Action], *args: Any, **kwargs: Any) -> ExecutionPlan:
        """Plan without executing (``after`` is refused: nothing would start the plan)."""
        if self.options.after:
            raise ConfigurationError(
                "plan() does not execute, so it cannot wait for other plans: use "
                "trigger() or delay() with after"
            )
        t = self._triggers
        existing = self._existing()
        if existing is not None:
            return t.persistence.load_execution_plan(existing)
        t.control.require_alive()
        try:
            return t.planner.plan(action_class, args, kwargs, attributes=self._attributes())
        except KeyTaken as exc:
            return t.persistence.load_execution_plan(self._taken(exc))

    def delay(
        self,
        action_class: type[Action],
        start_at: datetime | float,
        *args: Any,
        start_before: datetime | float | None = None,
        **kwargs: Any,
    ) -> ExecutionPlan:
        """Plan and execute at ``start_at`` (and once the plans of ``after`` stopped)."""
        t = self._triggers
        existing = self._existing()
        if existing is not None:
            return t.persistence.load_execution_plan(existing)
        t.control.require_alive()
        try:
            return t.delayed.delay(
                action_class,
                start_at,
                args,
                kwargs,
                start_before=start_before,
                attributes=self._attributes(),
                after=self.options.after,
            )
        except KeyTaken as exc:
            return t.persistence.load_execution_plan(self._taken(exc))

    # -- helpers ------------------------------------------------------------------

    def _existing(self) -> str | None:
        """The plans of ``after`` exist; the id of the plan with the key, if any."""
        t = self._triggers
        t.control.require_alive()
        prerequisites.check_exist(t.persistence, self.options.after)
        if self.options.key is None:
            return None
        found = t.persistence.plan_id_with_key(self.options.key)
        if found is None:
            return None
        return self._taken(KeyTaken(self.options.key, found))

    def _taken(self, taken: KeyTaken) -> str:
        """The key names an existing plan: it is the answer, unless it cannot be (the
        plans it would wait for wait for it)."""
        prerequisites.check_no_cycle(
            self._triggers.delayed.store, taken.execution_plan_id, self.options.after
        )
        return taken.execution_plan_id

    def _attributes(self) -> PlanAttributes:
        options = self.options
        deadline_at = None
        if options.deadline is not None:
            deadline_at = self._triggers.clock.utcnow() + timedelta(seconds=options.deadline)
        return PlanAttributes(
            key=options.key,
            priority=options.priority,
            deadline_at=deadline_at,
            labels=options.labels,
        )
