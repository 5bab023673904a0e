"""The planner: the one place where a plan is built and saved.

``world.trigger``, ``world.plan``, sub-plans and delayed plans all plan through
:class:`Planner`. It builds the plan in the application's transaction, saves it
at once with the locks it takes (its singleton locks, its execution lock when it
is to run, and optionally the execution request to an executor world), turns a
taken singleton lock into a clear error, and keeps a plan whose planning failed
(``stopped``/``error``) so that it can be inspected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from dynflow.action.base import Action
from dynflow.action.registry import class_name
from dynflow.action.singleton import SINGLETON_LOCK
from dynflow.cluster.client_dispatcher import Needs
from dynflow.cluster.remote import plan_needs
from dynflow.coordinator import EXECUTION_LOCK, PLANNED_LOCK
from dynflow.errors import ConfigurationError, LockTaken, PlanningFailed
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes, StepError
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.observe import tracing_for

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld
    from dynflow.middleware import Middleware
    from dynflow.services.ports import Ports
    from dynflow.transaction import TransactionAdapter

Rows = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


class ExecutionRequest(Protocol):
    """An execution request written together with the new plan (see
    :class:`dynflow.cluster.remote.Handoff`)."""

    def envelope(self, plan_id: str, needs: Needs) -> tuple[str, str] | None: ...

    def saved(self, written: bool) -> None: ...

    def abandon(self) -> None: ...


@dataclass(frozen=True)
class BuiltPlan:
    """A child plan built by :meth:`Planner.build_sub_plan`, not saved yet."""

    plan: ExecutionPlan
    locks: list[dict[str, Any]]
    builder: PlanBuilder


class Planner:
    """Builds plans and saves them, with their locks, in one write."""

    def __init__(
        self,
        ports: Ports,
        world: ActionWorld,
        middleware: Callable[[], Sequence[type[Middleware]]],
        transactions: TransactionAdapter,
    ) -> None:
        self.world = world
        #: the largest action input (and event payload), in bytes of JSON
        self.max_value_bytes = ports.config.max_value_bytes
        self.persistence = ports.persistence
        self.coordinator = ports.coordinator
        self.middleware = middleware
        self.transactions = transactions
        #: spans of the plan phases; the caller's trace context goes with the plan
        self.tracing = tracing_for(ports.config.tracing)
        #: stamped on every plan planned here (``World(code_version=...)``)
        self.code_version = ports.config.code_version

    def attributes(self, attributes: PlanAttributes | None = None) -> PlanAttributes:
        """The attributes of a new plan: the trigger options, this world's code version."""
        if attributes is None:
            return PlanAttributes(code_version=self.code_version)
        return replace(attributes, code_version=self.code_version)

    def plan(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        lock: bool = False,
        caller: tuple[str, int] | None = None,
        request: ExecutionRequest | None = None,
        attributes: PlanAttributes | None = None,
    ) -> ExecutionPlan:
        """Plan a new plan, ``planned`` (or raise :class:`PlanningFailed`). ``lock``:
        take its execution lock, to run it; ``request``: the execution request to write
        with it; ``attributes``: its trigger options (:class:`KeyTaken` when its key is
        taken: nothing is stored)."""
        builder = self._new(action_class, args, kwargs, caller, attributes)
        plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
        locks = builder.singleton_locks()
        if lock:
            locks.append(self.coordinator.lock_row(EXECUTION_LOCK, builder.id))
        elif caller is None and request is None:  # world.plan(): it waits to be executed
            locks.append(self.coordinator.lock_row(PLANNED_LOCK, builder.id))
        envelope = None
        if request is not None:
            envelope = request.envelope(builder.id, plan_needs(plan))
        try:
            written = self.persistence.save_new_plan(plan, locks=locks, envelope=envelope)
        except BaseException as exc:
            if request is not None:
                request.abandon()
            if not isinstance(exc, LockTaken):
                raise
            self._conflict(builder, self._save_failed_new)
        if request is not None:
            request.saved(written)
        return plan

    def build_sub_plan(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int],
    ) -> BuiltPlan:
        """Plan a child plan of action ``caller`` without saving it: :meth:`save_sub_plans`
        saves many in one write. A planning failure raises :class:`PlanningFailed` at
        once (the failed plan is kept, as by :meth:`plan`)."""
        builder = self._new(action_class, args, kwargs, caller, None)
        plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
        return BuiltPlan(plan, builder.singleton_locks(), builder)

    def save_sub_plans(self, plans: Sequence[object]) -> None:
        """Save child plans built by :meth:`build_sub_plan`, with their singleton locks,
        in one write. When one of those locks is held they are saved one at a time:
        the children whose lock is taken are kept failed, and the first one's
        :class:`PlanningFailed` is raised after the others are saved."""
        built = [_built(one) for one in plans]
        locks = [lock for one in built for lock in one.locks]
        try:
            self.persistence.save_new_plans([one.plan for one in built], locks=locks)
            return
        except LockTaken:
            pass
        failed: PlanningFailed | None = None
        for one in built:
            try:
                self.persistence.save_new_plan(one.plan, locks=one.locks)
            except LockTaken:
                try:
                    self._conflict(one.builder, self._save_failed_new)
                except PlanningFailed as exc:
                    failed = failed or exc
        if failed is not None:
            raise failed

    def plan_claimed(
        self,
        execution_plan_id: str,
        action_class: type[Action],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        attributes: PlanAttributes | None = None,
    ) -> ExecutionPlan:
        """Plan a delayed plan, whose execution lock this world claimed, under its own
        id: the lock stays with the planned plan, or is released if planning fails.
        ``attributes``: those stored with it (they are not written again)."""
        builder = PlanBuilder(self.world, self.middleware(), execution_plan_id=execution_plan_id)
        builder.max_value_bytes = self.max_value_bytes
        builder.tracing = self.tracing
        builder.attributes = attributes or PlanAttributes()
        try:
            self._build(builder, action_class, tuple(args), kwargs, self._save_failed_claimed)
            plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
            try:
                self.persistence.delayed.save_processed(plan, locks=builder.singleton_locks())
            except LockTaken:
                self._conflict(builder, self._save_failed_claimed)
        except PlanningFailed:
            raise
        except BaseException:
            self.coordinator.release(EXECUTION_LOCK, execution_plan_id)
            raise
        return plan

    def singleton_conflict(self, singletons: Sequence[str]) -> str:
        """Why a plan of these singleton actions cannot be planned now."""
        for name in singletons:
            for held in self.coordinator.find_locks(lock_class=SINGLETON_LOCK, id=name):
                return (
                    f"singleton action {name} is already running in execution plan "
                    f"{held.owner_id}: wait until it stops (or halt it)"
                )
        return "a lock this plan needs is taken: try again"

    # -- steps -------------------------------------------------------------------

    def _new(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int] | None,
        attributes: PlanAttributes | None,
    ) -> PlanBuilder:
        """A new plan built (or :class:`PlanningFailed`, the failed plan saved)."""
        _check_action_class(action_class)
        builder = PlanBuilder(self.world, self.middleware())
        builder.max_value_bytes = self.max_value_bytes
        builder.caller = caller
        if self.tracing is not None:
            builder.tracing, builder.trace_context = self.tracing, self.tracing.carrier()
        builder.attributes = self.attributes(attributes)
        self._build(builder, action_class, args, kwargs, self._save_failed_new)
        return builder

    def _build(
        self,
        builder: PlanBuilder,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        save_failed: Callable[[PlanBuilder], None],
    ) -> None:
        try:
            with self.transactions.transaction() as transaction:
                builder.transaction = transaction
                builder.build(action_class, args, kwargs)
        except Exception as exc:
            message = builder.record_failure(exc)
            save_failed(builder)
            raise PlanningFailed(builder.id, message) from exc

    def _conflict(self, builder: PlanBuilder, save_failed: Callable[[PlanBuilder], None]) -> None:
        """A singleton lock of the plan is taken: keep the plan, failed, and say why."""
        message = self.singleton_conflict(builder.singletons)
        builder.fail_entry(StepError(class_name(LockTaken), message))
        save_failed(builder)
        raise PlanningFailed(builder.id, message) from None

    def _save_failed_new(self, builder: PlanBuilder) -> None:
        self.persistence.save_new_plan(builder.plan(PlanState.STOPPED, PlanResult.ERROR))

    def _save_failed_claimed(self, builder: PlanBuilder) -> None:
        release = {"class": EXECUTION_LOCK, "id": builder.id, "owner_id": self.coordinator.world_id}
        self.persistence.delayed.save_processed(
            builder.plan(PlanState.STOPPED, PlanResult.ERROR), release=release
        )


def _built(one: object) -> BuiltPlan:
    if not isinstance(one, BuiltPlan):
        raise ConfigurationError(f"expected a plan made by build_sub_plan, got {one!r}")
    return one


def _check_action_class(action_class: Any) -> None:
    if not (isinstance(action_class, type) and issubclass(action_class, Action)):
        raise ConfigurationError(f"expected an Action subclass, got {action_class!r}")
