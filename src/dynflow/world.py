"""The world: one per process, composed of persistence, coordinator and executor."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any

from dynflow.action import registry
from dynflow.action.base import Action, PhaseContext
from dynflow.action.hooks import hooks_of, kinds_for
from dynflow.action.singleton import SINGLETON_LOCK
from dynflow.action.sub_plans import SUB_PLAN_FINISHED, WithSubPlans
from dynflow.clock import ThreadClock
from dynflow.cluster.connector.messages import CancelPlan as CancelRequest
from dynflow.cluster.connector.messages import Event as EventRequest
from dynflow.cluster.connector.messages import Halt as HaltRequest
from dynflow.cluster.connector.messages import Ping
from dynflow.cluster.remote import (
    Handoff,
    Remote,
    connector_kind,
    make_connector,
    plan_queues,
    then,
)
from dynflow.config import WorldConfig
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.errors import (
    ConfigurationError,
    DynflowError,
    ExecutionError,
    LockTaken,
    NotFound,
    NotSerializable,
    PlanningFailed,
)
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.executor import Executor
from dynflow.executor.core import ExecutorCore, singleton_locks, skip_step
from dynflow.executor.runner import StepRunner
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.executor.work import Progress
from dynflow.middleware import MiddlewareStack
from dynflow.persistence import Persistence
from dynflow.persistence.changes import Changes
from dynflow.serialization import freeze, to_json_value
from dynflow.services.delayed import DelayedPlans
from dynflow.services.liveness import RECOVERABLE, Recovery, last_executor
from dynflow.transaction import transaction_adapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triggered:
    """A triggered plan: its id, and a future resolved when it stops or pauses."""

    execution_plan_id: str
    finished: Future[ExecutionPlan]


class World:
    """A process's engine: plans, persists and (unless ``executor=False``) executes.

    ``World()`` uses ``$DYNFLOW_DATABASE_URL``, else ``sqlite:///dynflow.sqlite3``.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        executor: bool = True,
        pool_size: int = 5,
        queues: dict[str, int] | None = None,
        connector: str | None = None,
        auto_rescue: bool = True,
        auto_execute: bool = True,
        world_id: str | None = None,
        **config: Any,
    ) -> None:
        self.config = WorldConfig.build(
            database_url,
            executor=executor,
            pool_size=pool_size,
            queues=dict(queues or {}),
            connector=connector,
            auto_rescue=auto_rescue,
            auto_execute=auto_execute,
            world_id=world_id,
            **config,
        )
        self.id = world_id or str(uuid.uuid4())
        self.middleware = MiddlewareStack()
        self.transactions = transaction_adapter(self.config.transaction_adapter)
        self.persistence = Persistence(self.config.database_url)
        self.coordinator = Coordinator(self.persistence.db, self.id)
        self.clock = self.config.clock or ThreadClock()
        self._terminated = False
        self._terminate_lock = threading.Lock()
        self._caller_steps: dict[tuple[str, int], int | None] = {}
        self._hook_pool: ThreadPoolExecutor | None = None
        self.executor: Executor | None = None
        try:
            if self.config.migrate:
                self.persistence.migrate()
            self._register()
        except Exception:
            self.persistence.close()
            self.clock.stop()
            raise
        if self.config.executor:
            self.executor = self._build_executor(self._core())
        #: how this world reaches other worlds, and they reach it
        self.connector = make_connector(self.config, self.persistence)
        self.remote = Remote(self, self.connector)
        self.recovery = Recovery(self)
        self.remote.start()
        self.clock.schedule(self.config.heartbeat_interval, self._beat)
        if self.config.validity_check_interval > 0:
            self.clock.schedule(self.config.validity_check_interval, self._check_validity)
        #: delayed plans; an executor world starts them when their time comes
        self.delayed = DelayedPlans(self, self.config.delayed_interval)
        if self.config.executor and self.config.auto_execute:
            self.recover()

    def _core(self) -> ExecutorCore:
        core = ExecutorCore(
            self.id,
            self.persistence,
            auto_rescue=self.config.auto_rescue,
            queues=self.config.all_queues,
        )
        core.on_finished = self._plan_finished
        return core

    def _runner(self, report: Callable[[Progress], None]) -> StepRunner:
        return StepRunner(self, lambda: self.middleware.items, self.transactions, report)

    def _build_executor(self, core: ExecutorCore) -> Executor:
        """The executor of this world; :class:`dynflow.testing.InThreadWorld` overrides it."""
        posts: list[Callable[[Progress], None]] = []
        executor = ThreadedExecutor(
            core, self._runner(lambda p: posts[0](p)), self.config.all_queues
        )
        posts.append(executor.post)
        return executor

    # -- context manager ----------------------------------------------------------

    def __enter__(self) -> World:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    # -- planning --------------------------------------------------------------------

    def plan(self, action_class: type[Action], *args: Any, **kwargs: Any) -> ExecutionPlan:
        """Plan without executing; the plan is ``planned`` (or raises ``PlanningFailed``)."""
        return self._plan(action_class, args, kwargs, lock=False)

    def trigger(self, action_class: type[Action], *args: Any, **kwargs: Any) -> Triggered:
        """Plan and execute; ``.finished`` resolves when the plan stops or pauses."""
        if self.executor is None:  # a client world: an executor world runs it
            # the lock, held until an executor takes it over, keeps starting executors
            # from picking the plan up as abandoned while it is on its way
            handoff = self.remote.handoff()
            plan = self._plan(action_class, args, kwargs, lock=True, handoff=handoff)
            if handoff is None:
                return Triggered(plan.id, self.remote.execute(plan.id, plan_queues(plan)))
            assert handoff.future is not None
            return Triggered(plan.id, handoff.future)
        plan = self._plan(action_class, args, kwargs, lock=True)
        return Triggered(plan.id, self.executor.execute(plan))

    def delay(
        self,
        action_class: type[Action],
        start_at: datetime | float,
        *args: Any,
        start_before: datetime | float | None = None,
        **kwargs: Any,
    ) -> ExecutionPlan:
        """Plan and execute later: the plan is ``scheduled`` until ``start_at`` (an aware
        datetime, or seconds from now), then some executor world plans it with these
        arguments and executes it; still waiting after ``start_before``, it fails instead.
        The arguments are stored as JSON (tuples come back as lists)."""
        self._require_alive()
        return self.delayed.delay(action_class, start_at, args, kwargs, start_before=start_before)

    def _plan(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        lock: bool,
        caller: tuple[str, int] | None = None,
        handoff: Handoff | None = None,
    ) -> ExecutionPlan:
        self._require_alive()
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise ConfigurationError(f"expected an Action subclass, got {action_class!r}")
        builder = PlanBuilder(self, self.middleware.items)
        builder.caller = caller
        try:
            with self.transactions.transaction() as transaction:
                builder.transaction = transaction
                builder.build(action_class, args, kwargs)
        except Exception as exc:
            message = builder.record_failure(exc)
            self.persistence.save_new_plan(builder.plan(PlanState.STOPPED, PlanResult.ERROR))
            raise PlanningFailed(builder.id, message) from exc
        plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
        locks = builder.singleton_locks()
        if lock:
            locks.append(self.coordinator.lock_row(EXECUTION_LOCK, builder.id))
        envelope = None
        if handoff is not None:  # the execution request is written with the plan
            queues = frozenset(s.queue for s in plan.steps.values() if s.phase != Phase.PLAN)
            envelope = handoff.envelope(builder.id, queues)
        try:
            written = self.persistence.save_new_plan(plan, locks=locks, envelope=envelope)
        except BaseException as exc:
            if handoff is not None:
                handoff.abandon()
            if not isinstance(exc, LockTaken):
                raise
            message = self._singleton_conflict(builder.singletons)
            builder.fail_entry(StepError("dynflow.errors.LockTaken", message))
            self.persistence.save_new_plan(builder.plan(PlanState.STOPPED, PlanResult.ERROR))
            raise PlanningFailed(builder.id, message) from None
        if handoff is not None:
            handoff.saved(written)
        return plan

    def _singleton_conflict(self, singletons: list[str]) -> str:
        for name in singletons:
            for held in self.coordinator.find_locks(lock_class=SINGLETON_LOCK, id=name):
                return (
                    f"singleton action {name} is already running in execution plan "
                    f"{held.owner_id}: wait until it stops (or halt it)"
                )
        return "a lock this plan needs is taken: try again"

    # -- execution -------------------------------------------------------------------

    def execute(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Execute a planned plan, resume a paused one, or run a delayed one now."""
        if self._scheduled(execution_plan_id):
            return self.delayed.run_now(execution_plan_id)
        return self._execute(execution_plan_id, (PlanState.PLANNED, PlanState.PAUSED))

    def _scheduled(self, execution_plan_id: str) -> bool:
        filters = {"id": execution_plan_id, "state": PlanState.SCHEDULED}
        return self.persistence.find_execution_plan_counts(filters) > 0

    def resume(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Resume a paused plan: its failed steps run again."""
        return self._execute(execution_plan_id, (PlanState.PAUSED,))

    def _execute(self, plan_id: str, allowed: tuple[PlanState, ...]) -> Future[ExecutionPlan]:
        if self.executor is None:  # a client world: an executor world runs it
            try:
                self._require_alive()
                self._locked_plan(plan_id, allowed)  # held until an executor takes it over
            except DynflowError as exc:
                return _failed(exc)
            return self.remote.execute(plan_id)
        try:
            plan = self._locked_plan(plan_id, allowed)
        except DynflowError as exc:
            return _failed(exc)
        return self.executor.execute(plan)

    def _execute_here(
        self, plan_id: str, client_world_id: str, request_id: str, accepted: str | None = None
    ) -> tuple[Future[ExecutionPlan], bool]:
        """An execution request from another world: run (or resume) the plan here; the
        execution lock records who asked. ``accepted`` (an answer's text) is written as
        the lock moves from the client, where the database can: (future, answered?)."""
        requester = {"client_world_id": client_world_id, "request_id": request_id}
        answered = False
        try:
            executor = self._require_executor()
            reply = None if accepted is None else (client_world_id, accepted)
            moved, plan, answered = self.persistence.take_over_plan(
                plan_id, client_world_id, self.id, requester, reply
            )
            plan = self._locked_plan(plan_id, RECOVERABLE, requester, (moved, plan))
        except DynflowError as exc:
            return _failed(exc), answered
        if plan.state is PlanState.RUNNING:  # its executor died: recover it here
            return executor.recover(plan, last_executor(plan), True), answered
        return executor.execute(plan), answered

    def ping(self, world_id: str, timeout: float = 5.0) -> Future[bool]:
        """True when ``world_id`` answers in time, False when it does not; a world id
        that is not registered fails the future at once."""
        if world_id == self.id:
            alive: Future[bool] = Future()
            alive.set_result(True)
            return alive
        return self.remote.request(world_id, Ping(), timeout=timeout)

    def _locked_plan(
        self,
        plan_id: str,
        allowed: tuple[PlanState, ...],
        lock_data: dict[str, Any] | None = None,
        taken: tuple[bool, ExecutionPlan | None] = (False, None),
    ) -> ExecutionPlan:
        """Take the plan's execution lock, unless it was ``taken`` over already (then
        maybe with the plan read), and load the plan; it must be in an ``allowed`` state."""
        moved, plan = taken
        try:
            if not moved:
                self.coordinator.acquire(EXECUTION_LOCK, plan_id, lock_data)
        except LockTaken as exc:
            raise ExecutionError(
                f"execution plan {plan_id} is already running in world {exc.owner_id}"
            ) from None
        try:
            if plan is None:
                plan = self.persistence.load_execution_plan(plan_id)
            if plan.state not in allowed:
                raise ExecutionError(
                    f"execution plan {plan_id} is {plan.state}/{plan.result}: "
                    f"only a plan that is {' or '.join(allowed)} can be executed this way"
                )
        except BaseException:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
            raise
        return plan

    def skip(self, execution_plan_id: str, step_id: int) -> ExecutionPlan:
        """Mark a failed step of a paused plan ``skipped`` (and steps needing its output).

        Resume the plan afterwards; it ends ``warning``.
        """
        plan = self._locked_plan(execution_plan_id, (PlanState.PAUSED,))
        try:
            step = plan.steps.get(step_id)
            if step is None:
                raise NotFound(f"execution plan {execution_plan_id} has no step {step_id}")
            if step.state is not StepState.ERROR:
                raise ExecutionError(
                    f"step {step_id} of execution plan {execution_plan_id} is {step.state}: "
                    "only a failed step can be skipped"
                )
            runtime = PlanRuntime.from_plan(plan, Changes())
            skip_step(runtime, step_id)
            self.persistence.apply(runtime.changes)
        finally:
            self.coordinator.release(EXECUTION_LOCK, execution_plan_id)
        return self.persistence.load_execution_plan(execution_plan_id)

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Stop a plan at once: no more steps run; it ends ``stopped``/``error``.

        A delayed (``scheduled``) plan is cancelled instead: ``stopped``/``cancelled``.
        """
        if self._scheduled(execution_plan_id):
            return _settled(lambda: self.delayed.cancel(execution_plan_id))
        if self.executor is not None and (
            self.executor.running(execution_plan_id) or self._holds_lock(execution_plan_id)
        ):
            return self.executor.halt(execution_plan_id)
        owner = self.remote.owner(execution_plan_id)
        if owner is not None:  # running in another world: it halts the plan
            request = self.remote.request(owner, HaltRequest(execution_plan_id))
            return then(request, lambda _: self.persistence.load_execution_plan(execution_plan_id))
        try:
            plan = self._locked_plan(
                execution_plan_id, (PlanState.PLANNED, PlanState.PAUSED, PlanState.PENDING)
            )
        except DynflowError as exc:
            return _failed(exc)
        try:
            runtime = PlanRuntime.from_plan(plan, Changes())
            for step in runtime.steps.values():  # e.g. left suspended by a terminated world
                if step.state is StepState.SUSPENDED:
                    error = StepError("dynflow.errors.ExecutionError", "halted while suspended")
                    runtime.set_step(step, StepState.ERROR, ended_at=now(), error=error)
            runtime.set_state(PlanState.STOPPED, PlanResult.ERROR, ended_at=now())
            runtime.record("halt execution", self.id)
            runtime.changes.released_locks.extend(singleton_locks(runtime))
            self.persistence.apply(runtime.changes)
        finally:
            self.coordinator.release(EXECUTION_LOCK, execution_plan_id)
        halted = self.persistence.load_execution_plan(execution_plan_id)
        self._plan_finished(halted)
        done: Future[ExecutionPlan] = Future()
        done.set_result(halted)
        return done

    def _holds_lock(self, execution_plan_id: str) -> bool:
        """True when this world holds the plan's execution lock (it is starting here)."""
        locks = self.coordinator.find_locks(lock_class=EXECUTION_LOCK, id=execution_plan_id)
        return any(lock.owner_id == self.id for lock in locks)

    def event(
        self,
        execution_plan_id: str,
        step_id: int,
        payload: Any = None,
        *,
        optional: bool = False,
    ) -> Future[Any]:
        """Deliver ``payload`` to a suspended step (``run(event=payload)``).

        The future resolves (True) once the step has the event; it fails when the
        plan or step does not exist or the step cannot take events any more.
        Events for one step are delivered in order, one run at a time; an event
        arriving while the step still runs waits until it suspends. With
        ``optional=True`` an undeliverable event is dropped: the future resolves
        with False.
        """
        try:
            payload = to_json_value(payload, f"event for step {step_id}")
        except NotSerializable as exc:
            return _failed(exc)
        if self.executor is not None and (
            self.executor.running(execution_plan_id) or self._holds_lock(execution_plan_id)
        ):
            return self.executor.event(execution_plan_id, step_id, payload, optional)
        owner = self.remote.owner(execution_plan_id)
        if owner is not None:  # running in another world: it delivers the event
            request = EventRequest(execution_plan_id, step_id, payload, optional)
            return self.remote.request(owner, request)
        try:
            plan = self.persistence.load_execution_plan(execution_plan_id)
            step = plan.steps.get(step_id)
            if step is None:
                raise NotFound(f"execution plan {execution_plan_id} has no step {step_id}")
            if step.state is not StepState.SUSPENDED:
                raise ExecutionError(
                    f"step {step_id} of execution plan {execution_plan_id} is {step.state}, "
                    "not suspended: the event was not delivered"
                )
            raise ExecutionError(
                f"execution plan {execution_plan_id} is {plan.state} and not executed by "
                f"world {self.id}: the event was not delivered"
                + (": resume the plan first" if plan.state is PlanState.PAUSED else "")
            )
        except DynflowError as exc:
            if optional:
                done: Future[Any] = Future()
                done.set_result(False)
                return done
            return _failed(exc)

    def cancel(self, execution_plan_id: str) -> list[Future[Any]]:
        """Cancel a plan: one future per running or suspended cancellable step.

        Each future resolves when its step has the cancel event; the plan then ends
        ``stopped``/``cancelled``. A plan without cancellable steps is not affected.
        A delayed (``scheduled``) plan is cancelled at once: one future, resolved
        with the cancelled plan. A plan running in another world is cancelled there:
        one future, resolved with how many steps got the cancel event.
        """
        if self._scheduled(execution_plan_id):
            return [_settled(lambda: self.delayed.cancel(execution_plan_id))]
        owner = self.remote.owner(execution_plan_id)
        if owner is not None:  # running in another world: it cancels, one future for all
            return [self.remote.request(owner, CancelRequest(execution_plan_id))]
        executor = self._require_executor()
        if not (executor.running(execution_plan_id) or self._holds_lock(execution_plan_id)):
            plan = self.persistence.load_execution_plan(execution_plan_id)
            raise ExecutionError(
                f"execution plan {execution_plan_id} is {plan.state}, not executed by world "
                f"{self.id}: only a running plan can be cancelled"
            )
        return executor.cancel(execution_plan_id).result(timeout=30)

    def _step_timeout(self, plan_id: str, step_id: int, sequence: int, seconds: float) -> None:
        if self.executor is not None and not self._terminated:
            self.executor.timeout(plan_id, step_id, sequence, seconds)

    # -- plans that stop or pause ----------------------------------------------------

    def _plan_finished(self, plan: ExecutionPlan) -> None:
        """After a plan stopped or paused (committed): wake its parent, run its hooks."""
        if plan.caller_execution_plan_id is not None and plan.caller_action_id is not None:
            key = (plan.caller_execution_plan_id, plan.caller_action_id)
            if key not in self._caller_steps:
                self._caller_steps[key] = self.persistence.run_step_id(*key)
            step_id = self._caller_steps[key]
            if step_id is not None:
                self.event(key[0], step_id, SUB_PLAN_FINISHED, optional=True)
        if plan.state is PlanState.STOPPED and _has_sub_plans(plan):
            # children it never started will not start now
            children = {"caller_execution_plan_id": plan.id, "state": PlanState.PLANNED}
            for child in self.persistence.find_execution_plans(filters=children):
                self.halt(child.id)
        kinds = kinds_for(plan.state, plan.result)
        try:
            entry = registry.lookup(plan.entry_action.action_class)
        except DynflowError:
            return
        names = hooks_of(entry, kinds)
        if names:
            self._run_soon(partial(self._run_hooks, entry, plan, names))

    def _run_hooks(self, entry: type[Action], plan: ExecutionPlan, names: tuple[str, ...]) -> None:
        record = plan.entry_action
        context = PhaseContext(self, plan.id, Phase.FINALIZE)
        action = entry(context, record.id, input=freeze(record.input), output=dict(record.output))
        for name in names:
            try:
                getattr(action, name)(plan)
            except Exception:
                log.exception("hook %s of execution plan %s failed", name, plan.id)

    def _run_soon(self, job: Callable[[], None]) -> None:
        """Run ``job`` outside the executor core (a small pool of its own)."""
        with self._terminate_lock:
            if self._hook_pool is None:
                self._hook_pool = ThreadPoolExecutor(2, thread_name_prefix="dynflow-hooks")
            self._hook_pool.submit(job)

    # -- recovery (see dynflow.services.liveness) -----------------------------------------------

    def recover(self) -> int:
        """Pick up plans that no live world executes: those of worlds found dead (see
        :meth:`perform_validity_checks`), plans planned and never started, and plans
        paused by a world's clean termination (not by a failure). Returns how many."""
        return self.recovery.recover()

    def perform_validity_checks(self) -> int:
        """Invalidate the worlds whose lease expired (by the database's clock) or whose
        process is gone from this host; returns how many were invalidated."""
        return self.recovery.perform_validity_checks()

    def invalidate(self, world_id: str) -> int:
        """Declare ``world_id`` dead: release its locks, drop its envelopes, delete its
        record, and hand each plan it held to a live executor (this one if it is an
        executor). Returns how many plans were handed over (0 when another world is
        invalidating it already)."""
        return self.recovery.invalidate(world_id) or 0

    # -- lifecycle -------------------------------------------------------------------

    def terminate(self, timeout: float | None = None) -> None:
        """Let running steps finish (up to ``timeout``), pause unfinished plans, unregister."""
        with self._terminate_lock:
            if self._terminated:
                return
            self._terminated = True
        try:
            self.delayed.stop()
            handed_over: list[str] = []
            if self.executor is not None:
                self.executor.terminate(
                    self.config.terminate_timeout if timeout is None else timeout
                )
                handed_over = self.executor.paused_by_termination()
            self.coordinator.unregister_world()
            self.recovery.hand_over(handed_over)
            self.remote.stop()
        finally:
            if self._hook_pool is not None:
                self._hook_pool.shutdown(wait=True)
            self.clock.stop()
            self.persistence.close()

    def _register(self) -> None:
        self.coordinator.register_world(
            executor=self.config.executor,
            queues=self.config.all_queues if self.config.executor else (),
            meta={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                # other worlds ping it only when it can hear them
                "connector": connector_kind(self.config, self.persistence),
                **self.config.meta,
            },
        )

    def _check_validity(self) -> None:
        if self._terminated:
            return
        try:
            self.perform_validity_checks()
        except DynflowError as exc:
            log.error("checking for dead worlds failed: %s", exc)
        self.clock.schedule(self.config.validity_check_interval, self._check_validity)

    def _beat(self) -> None:
        if self._terminated:
            return
        try:
            if not self.coordinator.heartbeat():
                # declared dead while alive: its plans went to other worlds, and fencing
                # drops them here at their next write; serve again under the same id
                log.error("world %s was declared dead: registering again", self.id)
                self._register()
        except DynflowError as exc:
            log.error("heartbeat of world %s failed: %s", self.id, exc)
        self.clock.schedule(self.config.heartbeat_interval, self._beat)

    def _require_alive(self) -> None:
        if self._terminated:
            raise ExecutionError(f"world {self.id} is terminated")

    def _require_executor(self) -> Executor:
        self._require_alive()
        if self.executor is None:
            raise ConfigurationError(
                f"world {self.id} has no executor (executor=False): run plans from a world "
                "with executor=True"
            )
        return self.executor

    def __repr__(self) -> str:
        return f"<World {self.id} {self.persistence.url}>"


def _has_sub_plans(plan: ExecutionPlan) -> bool:
    for action in plan.actions:
        try:
            if issubclass(registry.lookup(action.action_class), WithSubPlans):
                return True
        except DynflowError:
            continue
    return False


def _settled(call: Callable[[], Any]) -> Future[Any]:
    """A future already holding ``call()``'s result or exception."""
    future: Future[Any] = Future()
    try:
        future.set_result(call())
    except DynflowError as exc:
        future.set_exception(exc)
    return future


def _failed(error: BaseException) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(error)
    return future
