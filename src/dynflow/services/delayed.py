"""Delayed plans: plans persisted now, planned and executed at their ``start_at``.

``world.delay(ActionClass, start_at, *args, start_before=None, **kwargs)`` stores
a plan in state ``scheduled`` with the arguments to plan it with. Every executor
world looks for plans whose time came every ``delayed_interval`` seconds (and at
the exact time for the plans it delayed itself); the first world to take a due
plan's execution lock plans it under the same id (``scheduled -> planning ->
planned``) and executes it. A plan still waiting after ``start_before`` ends
``stopped``/``error`` instead. Time is the world clock's ``utcnow()``, so a
:class:`dynflow.clock.ManualClock` drives it in tests.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow import futures
from dynflow.action import registry
from dynflow.action.base import Action
from dynflow.action.registry import class_name
from dynflow.clock import aware_utc
from dynflow.cluster.client_dispatcher import may_run
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import (
    ConfigurationError,
    DynflowError,
    ExecutionError,
    NotFound,
    PlanningFailed,
    UnknownActionClass,
)
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes, StepError
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.persistence.delayed import Claim, DelayedPlan
from dynflow.serialization import to_json_value
from dynflow.services import prerequisites

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld
    from dynflow.clock import Timer
    from dynflow.executor import Executor
    from dynflow.services.planning import Planner
    from dynflow.services.ports import Ports

__all__ = ["DelayedPlan", "DelayedPlans"]

log = logging.getLogger(__name__)

#: due plans taken up per look; when there are more, the next look follows at once
BATCH = 100

TOO_LATE = "execution plan {plan_id} could not be started before {start_before} (start_before)"


class DelayedPlans:
    """A world's delayed plans: delays them, and (in an executor world) starts them in time."""

    def __init__(
        self,
        ports: Ports,
        world: ActionWorld,
        planner: Planner,
        executor: Executor | None,
        on_finished: Callable[[ExecutionPlan], None],
    ) -> None:
        self.world = world
        self.persistence = ports.persistence
        self.store = ports.persistence.delayed
        self.coordinator = ports.coordinator
        self.planner = planner
        self.executor = executor
        self.clock = ports.clock
        self.interval = ports.config.delayed_interval
        #: this world's code version: it takes up only the plans of it (or of none)
        self.code_version = ports.config.code_version
        self.on_finished = on_finished
        self._lock = threading.RLock()  # one look at a time; stop() waits for it
        self._stopped = False
        self._timer: Timer | None = None
        self._wake_lock = threading.Lock()
        #: plans stopped, whose waiting plans ``wake`` has not looked up yet
        self._woken: list[str] = []
        self._waking = False
        #: more checks made at every look (e.g. plans past their deadline)
        self.periodic: list[Callable[[], object]] = []

    def start(self) -> None:
        """An executor world starts what came due while it was away, then looks again
        every ``interval`` seconds."""
        if self.executor is not None:
            self._timer = self.clock.schedule(0, self._tick)

    # -- delaying -----------------------------------------------------------------

    def delay(
        self,
        action_class: type[Action],
        start_at: datetime | float,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        start_before: datetime | float | None = None,
        attributes: PlanAttributes | None = None,
        after: tuple[str, ...] = (),
    ) -> ExecutionPlan:
        """Store a ``scheduled`` plan to plan with ``args``/``kwargs`` at ``start_at``
        (and once the plans of ``after`` stopped).

        ``start_at``/``start_before``: aware datetimes, or seconds from now. Raises
        :class:`~dynflow.errors.KeyTaken` when the key of ``attributes`` is taken.
        """
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise ConfigurationError(f"expected an Action subclass, got {action_class!r}")
        now = self.clock.utcnow()
        at = _moment(start_at, now, "start_at")
        before = None if start_before is None else _moment(start_before, now, "start_before")
        if before is not None and before < at:
            raise ConfigurationError(
                f"start_before ({before.isoformat()}) is earlier than start_at "
                f"({at.isoformat()}): the plan could never start"
            )
        name = f"delayed {action_class.__name__} argument"
        payload = {
            "action_class": action_class.class_name(),
            "args": [to_json_value(v, f"{name} {i}") for i, v in enumerate(args)],
            "kwargs": {k: to_json_value(v, f"{name} {k!r}") for k, v in (kwargs or {}).items()},
        }
        builder = PlanBuilder(self.world)
        builder.schedule(action_class)
        builder.attributes = self.planner.attributes(attributes)
        plan = builder.plan(PlanState.SCHEDULED, PlanResult.PENDING)
        self.store.save_scheduled(
            plan,
            {
                "execution_plan_id": builder.id,
                "start_at": at,
                "start_before": before,
                "args": payload,
            },
            after,
        )
        if self.executor is not None and not self._stopped:
            delay = max((at - now).total_seconds(), 0.0)
            self.clock.schedule(delay, partial(self._on_time, at))
        return plan

    # -- starting due plans ---------------------------------------------------------

    def check(self, until: datetime | None = None) -> int:
        """Start (or time out) the plans due by now (or by ``until``, if later).

        Returns how many this world took up; plans another world holds are skipped.
        """
        count, _ = self._check(until)
        return count

    def _check(self, until: datetime | None) -> tuple[int, bool]:
        with self._lock:
            if self._stopped or self.executor is None:
                return 0, False
            now = self.clock.utcnow()
            when = max(now, until) if until else now
            due = self.store.find_due(when, BATCH, self.code_version)
            count = 0
            for delayed in due:
                if self._stopped:
                    break
                try:
                    count += self._take_up(delayed)
                except DynflowError as exc:  # e.g. the database: try again next time
                    log.error("cannot start delayed plan %s: %s", delayed.execution_plan_id, exc)
            return count, len(due) == BATCH

    def _tick(self) -> None:
        more = False
        try:
            _, more = self._check(None)
        except Exception:
            log.exception("looking for due delayed plans failed")
        for check in self.periodic:
            try:
                check()
            except Exception:
                log.exception("a periodic check of delayed plans failed")
        with self._lock:
            if not self._stopped:
                self._timer = self.clock.schedule(0 if more else self.interval, self._tick)

    def wake(self, stopped_plan_id: str) -> None:
        """A plan stopped: start the plans that waited for it (``after``) and are due,
        each looked up by id (not by the look over every delayed plan).

        Plans that stop while a look is under way are looked up together by the
        thread making it, right after (one query for many stopped plans)."""
        if self.executor is None or self._stopped:
            return
        with self._wake_lock:
            self._woken.append(stopped_plan_id)
            if self._waking:
                return
            self._waking = True
        try:
            while True:
                with self._wake_lock:
                    stopped, self._woken = self._woken, []
                    if not stopped:
                        self._waking = False
                        return
                self._wake(stopped)
        except BaseException:
            with self._wake_lock:
                self._waking = False
            raise

    def _wake(self, stopped: list[str]) -> None:
        for plan_id in self.store.dependents_of(stopped):
            try:
                delayed = self.store.load(plan_id)
            except NotFound:  # taken up meanwhile
                continue
            if delayed.start_at > self.clock.utcnow():
                continue  # its time comes later: its timer or the next look starts it
            with self._lock:
                if self._stopped:
                    return
                try:
                    self._take_up(delayed)
                except DynflowError as exc:
                    log.error("cannot start delayed plan %s: %s", plan_id, exc)

    def _on_time(self, start_at: datetime) -> None:
        try:
            self.check(start_at)
        except Exception:
            log.exception("starting delayed plans due at %s failed", start_at)

    def _take_up(self, delayed: DelayedPlan) -> int:
        plan_id = delayed.execution_plan_id
        if not may_run(self.code_version, delayed.attributes.code_version):
            return 0  # an executor of its version takes it up
        late = delayed.start_before is not None and self.clock.utcnow() > delayed.start_before
        found = self.store.prerequisites(plan_id)
        if any(state not in (None, PlanState.STOPPED) for _, state, _ in found):
            return 0  # another prerequisite still runs
        blocked = prerequisites.failure(plan_id, found)
        late = late or blocked is not None
        claim = self.store.claim(plan_id, self._lock_row(plan_id), planning=not late)
        if claim is Claim.LOCKED:
            return 0
        if claim is Claim.GONE:  # moved on since we read it: its delayed row is stale
            self.store.delete(plan_id)
            return 0
        if blocked is not None:
            self._stop(plan_id, PlanResult.ERROR, blocked)
            log.warning("%s", blocked.message)
            return 1
        if late:
            assert delayed.start_before is not None
            message = TOO_LATE.format(
                plan_id=plan_id, start_before=delayed.start_before.isoformat()
            )
            self._stop(plan_id, PlanResult.ERROR, StepError(class_name(ExecutionError), message))
            log.warning("%s", message)
            return 1
        started = self._plan_and_execute(delayed, self._executor())
        started.add_done_callback(partial(_log_failure, plan_id))
        return 1

    # -- requests about one delayed plan -----------------------------------------

    def run_now(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Plan a ``scheduled`` plan now, whatever its ``start_at``/``start_before``, and
        execute it here; resolved like ``world.execute`` (planning failure:
        :class:`dynflow.PlanningFailed`)."""
        try:
            executor = self._executor()
            delayed = self.store.load(execution_plan_id)
            if not may_run(self.code_version, delayed.attributes.code_version):
                raise ExecutionError(
                    f"execution plan {execution_plan_id} is of code version "
                    f"{delayed.attributes.code_version}: run it from an executor world of "
                    f"that version (this one is {self.code_version})"
                )
            self._claim(execution_plan_id, planning=True, verb="run")
        except DynflowError as exc:
            return futures.failed(exc)
        return self._plan_and_execute(delayed, executor)

    def expire(self, execution_plan_id: str, error: StepError) -> ExecutionPlan | None:
        """End a ``scheduled`` plan with ``error`` (e.g. its deadline passed): None when
        it moved on or another world holds it."""
        claim = self.store.claim(
            execution_plan_id, self._lock_row(execution_plan_id), planning=False
        )
        if claim is not Claim.CLAIMED:
            return None
        return self._stop(execution_plan_id, PlanResult.ERROR, error)

    def cancel(self, execution_plan_id: str) -> ExecutionPlan:
        """Stop a ``scheduled`` plan before it starts: ``stopped``/``cancelled``."""
        if self._stopped:
            raise ExecutionError(f"world {self.world.id} is terminated")
        self._claim(execution_plan_id, planning=False, verb="cancelled")
        return self._stop(execution_plan_id, PlanResult.CANCELLED, None)

    def after(self, execution_plan_id: str) -> tuple[list[str], list[str]]:
        """(the plans it starts after, the scheduled plans that wait for it)."""
        prerequisites = [p for p, _, _ in self.store.prerequisites(execution_plan_id)]
        return prerequisites, self.store.dependents(execution_plan_id)

    def find_delayed_plans(
        self, page: int | None = None, per_page: int | None = None
    ) -> list[DelayedPlan]:
        """The plans waiting for their time, the soonest first."""
        return self.store.find(page, per_page)

    def stop(self) -> None:
        """No more looks (waits for one in progress); part of ``world.terminate()``."""
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()

    # -- helpers ------------------------------------------------------------------

    def _executor(self) -> Executor:
        if self._stopped:
            raise ExecutionError(f"world {self.world.id} is terminated")
        executor = self.executor
        if executor is None:
            raise ConfigurationError(
                f"world {self.world.id} has no executor (executor=False): run delayed plans "
                "from a world with executor=True"
            )
        return executor

    def _lock_row(self, plan_id: str) -> dict[str, Any]:
        return self.coordinator.lock_row(EXECUTION_LOCK, plan_id)

    def _release_row(self, plan_id: str) -> dict[str, Any]:
        return {"class": EXECUTION_LOCK, "id": plan_id, "owner_id": self.coordinator.world_id}

    def _claim(self, plan_id: str, *, planning: bool, verb: str) -> None:
        claim = self.store.claim(plan_id, self._lock_row(plan_id), planning=planning)
        if claim is Claim.LOCKED:
            owner = self.coordinator.execution_lock_owner(plan_id) or "another world"
            raise ExecutionError(f"execution plan {plan_id} is being started by world {owner}")
        if claim is Claim.GONE:
            plan = self.persistence.load_execution_plan(plan_id)  # or NotFound
            raise ExecutionError(
                f"execution plan {plan_id} is {plan.state}/{plan.result}: only a scheduled "
                f"plan can be {verb} this way"
            )

    def _stop(self, plan_id: str, result: PlanResult, error: StepError | None) -> ExecutionPlan:
        """End a claimed plan that was never planned, release its lock, run its hooks."""
        try:
            self.store.stop(
                plan_id,
                result=result,
                step_state=StepState.CANCELLED if error is None else StepState.ERROR,
                error=error.to_json() if error else None,
                ended_at=datetime.now(UTC),
                release=self._release_row(plan_id),
            )
        except BaseException:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
            raise
        plan = self.persistence.load_execution_plan(plan_id)
        self.on_finished(plan)
        return plan

    def _plan_and_execute(self, delayed: DelayedPlan, executor: Executor) -> Future[ExecutionPlan]:
        """Plan a claimed plan under its own id and execute it; the lock goes with the plan
        to the executor, or is released when planning fails."""
        plan_id = delayed.execution_plan_id
        try:
            action_class = registry.lookup(delayed.action_class)
        except UnknownActionClass as exc:
            self._stop(
                plan_id, PlanResult.ERROR, StepError(class_name(UnknownActionClass), str(exc))
            )
            return futures.failed(PlanningFailed(plan_id, str(exc)))
        try:
            plan = self.planner.plan_claimed(
                plan_id, action_class, delayed.args, delayed.kwargs, delayed.attributes
            )
        except PlanningFailed as exc:
            return futures.failed(exc)
        return executor.execute(plan)


def _moment(value: Any, now: datetime, name: str) -> datetime:
    """An aware UTC datetime from a datetime or a number of seconds after ``now``."""
    if isinstance(value, datetime):
        return aware_utc(value, name, "e.g. datetime.now(UTC) + timedelta(minutes=5)")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return now + timedelta(seconds=value)
    raise ConfigurationError(
        f"{name} must be an aware datetime or a number of seconds from now, got {value!r}"
    )


def _log_failure(plan_id: str, future: Future[ExecutionPlan]) -> None:
    error = future.exception()
    if error is not None:
        log.error("delayed plan %s did not start: %s", plan_id, error)
