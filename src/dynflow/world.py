"""The world: one per process. It assembles the engine's parts and delegates to them.

Parts (``docs/architecture.md``): persistence and coordinator (state), cluster (other
worlds), executor, and the services that do the work (planner, plan control,
liveness, delayed plans, finished plans, retention); none of them imports this module.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Unpack

from dynflow.action.base import Action
from dynflow.action.world import BuiltPlan as PlanToSave
from dynflow.clock import Clock, ThreadClock
from dynflow.cluster.connector import Connector
from dynflow.cluster.executor_dispatcher import ExecutorDispatcher
from dynflow.cluster.remote import (
    Cluster,
    answers_in_commits,
    connector_kind,
    connector_name,
    make_connector,
)
from dynflow.config import WorldConfig
from dynflow.coordinator import PLANNED_LOCK, Coordinator
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanResult
from dynflow.executor import Executor
from dynflow.executor.core import ExecutorCore
from dynflow.executor.runner import StepRunner
from dynflow.executor.threaded import ThreadedExecutor
from dynflow.middleware import MiddlewareStack
from dynflow.observe import Observability
from dynflow.persistence import PersistencePort, open_persistence
from dynflow.persistence.sql.database import idle_in_transaction_for
from dynflow.services import handout, reverting
from dynflow.services.control import PlanControl
from dynflow.services.delayed import DelayedPlans
from dynflow.services.finished import FinishedPlans
from dynflow.services.liveness import Liveness, register
from dynflow.services.maintenance import Maintenance
from dynflow.services.options import OptionArguments, Options, Triggered, Triggers
from dynflow.services.planning import BuiltPlan, Planner
from dynflow.services.ports import Ports
from dynflow.services.retention import Retention
from dynflow.services.schedules import Schedule, Schedules
from dynflow.services.versions import CodeVersions
from dynflow.transaction import transaction_adapter

#: builds a world's executor from its core and step runner (``World(executor=...)``)
ExecutorFactory = Callable[[ExecutorCore, StepRunner], Executor]


class World:
    """A process's engine: plans, persists and (unless ``executor=False``) executes.

    ``World()`` uses ``$DYNFLOW_DATABASE_URL``, else ``sqlite:///dynflow.sqlite3``.
    Parts may be injected: ``persistence=``, ``connector=`` (a connector, not its
    name), ``executor=`` (a factory ``(core, runner) -> executor``) and ``clock=``."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        executor: bool | ExecutorFactory = True,
        pool_size: int = 5,
        queues: dict[str, int] | None = None,
        connector: str | Connector | None = None,
        auto_rescue: bool = True,
        auto_execute: bool = True,
        world_id: str | None = None,
        **config: Any,
    ) -> None:
        persistence: PersistencePort | None = config.pop("persistence", None)
        self.config = WorldConfig.build(
            database_url or (persistence.url if persistence is not None else None),
            executor=executor is not False,
            pool_size=pool_size,
            queues=dict(queues or {}),
            connector=connector_name(connector),
            auto_rescue=auto_rescue,
            auto_execute=auto_execute,
            world_id=world_id,
            **config,
        )
        self.id = world_id or str(uuid.uuid4())
        self.middleware = MiddlewareStack()
        self.transactions = transaction_adapter(self.config.transaction_adapter)
        # a session of this world idle inside a transaction (a stopped process) ends
        # before long: its row locks do not block the world that invalidates it
        self.persistence = persistence or open_persistence(
            self.config.database_url,
            idle_in_transaction=idle_in_transaction_for(self.config.lease),
        )
        self.coordinator = Coordinator(self.persistence.db, self.id)
        self.clock: Clock = self.config.clock or ThreadClock()
        self._terminated = False
        self._terminate_lock = threading.Lock()
        self.executor: Executor | None = None
        kind = connector_kind(self.config, self.persistence)
        try:  # logs, metrics (``.metrics.registry``) and traces of this world:
            self.observe = Observability.build(self.config, self.persistence, self.coordinator)
            if self.config.migrate:
                self.persistence.migrate()
            register(self.coordinator, self.config, kind)
        except Exception:
            self.persistence.close()
            self.clock.stop()
            raise
        middleware = lambda: self.middleware.items  # noqa: E731
        core = None
        if self.config.executor:
            core = ExecutorCore(
                self.id,
                self.persistence,
                self.coordinator.registration,
                auto_rescue=auto_rescue,
                queues=self.config.all_queues,
                clock=self.clock,
            )
            runner = StepRunner(self, middleware, self.transactions, self.config.max_value_bytes)
            threaded = partial(ThreadedExecutor, queues=self.config.all_queues)
            self.executor = (executor if callable(executor) else threaded)(core, runner)
        ports = Ports(self.id, self.config, self.persistence, self.coordinator, self.clock)
        #: how this world reaches other worlds, and they reach it
        self.connector = make_connector(self.config, self.persistence, connector)
        self.cluster = Cluster(ports, self.connector)
        inline = getattr(executor, "inline", False)
        self.finished = FinishedPlans(ports, self, inline=inline)
        self.planner = Planner(ports, self, middleware, self.transactions)
        #: delayed plans; an executor world starts them when their time comes
        self.delayed = DelayedPlans(ports, self, self.planner, self.executor, self.finished)
        self.control = PlanControl(
            ports,
            self.executor,
            self.cluster,
            self.planner,
            self.delayed,
            self.finished,
            inline=inline,
        )
        self.liveness = Liveness(ports, self.control, self.cluster, kind)
        self.triggers = Triggers(ports, self.control, self.planner, self.delayed, self.finished)
        #: deletes old plans, on request and (with ``retention=``) periodically
        self.retention = Retention(ports)
        #: vacuums and analyzes the engine's tables when the database is behind
        self.maintenance = Maintenance(ports)
        self.versions = CodeVersions(ports)
        #: recurring plans; an executor world triggers them when due
        self.scheduler = Schedules(ports, self._keyed_trigger, runs=core is not None)
        if core is not None:
            core.on_finished, core.limits.gate.wake = self.finished, self.cluster.wake_limits
            self.observe.attach(core, runner, self.executor)
            in_commits = answers_in_commits(self.connector, self.persistence)
            dispatcher = ExecutorDispatcher(self.id, self.control, self.cluster.outbox, in_commits)
            self.cluster.serve(dispatcher.receive, dispatcher.receive_executions)
        self.cluster.start()
        self.liveness.start()
        self.delayed.start()
        self.retention.start()
        self.maintenance.start()
        self.scheduler.start()
        if self.config.executor and self.config.auto_execute:
            self.recover()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    # -- planning and starting -----------------------------------------------------

    def plan(self, action_class: type[Action], *args: Any, **kwargs: Any) -> ExecutionPlan:
        """Plan without executing; the plan is ``planned`` (or raises ``PlanningFailed``)."""
        self.control.require_alive()
        return self.planner.plan(action_class, args, kwargs)

    def trigger(self, action_class: type[Action], *args: Any, **kwargs: Any) -> Triggered:
        """Plan and execute; ``.finished`` resolves when the plan stops or pauses."""
        return Triggered(*self.control.trigger(action_class, args, kwargs))

    def delay(
        self,
        action_class: type[Action],
        start_at: datetime | float,
        *args: Any,
        start_before: datetime | float | None = None,
        **kwargs: Any,
    ) -> ExecutionPlan:
        """Plan and execute later: ``scheduled`` until ``start_at`` (an aware datetime, or
        seconds from now), then planned with these arguments (stored as JSON) and
        executed by some executor world; still waiting after ``start_before``, it fails."""
        self.control.require_alive()
        return self.delayed.delay(action_class, start_at, args, kwargs, start_before=start_before)

    def options(self, **options: Unpack[OptionArguments]) -> Options:
        """``key``, ``after``, ``priority``, ``deadline``, ``labels`` for the ``trigger``,
        ``plan`` and ``delay`` of the object returned (see dynflow.services.options)."""
        return self.triggers.options(**options)

    def _keyed_trigger(
        self, key: str, cls: type[Action], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        return self.options(key=key).trigger(cls, *args, **kwargs).execution_plan_id

    def schedule(
        self,
        name: str,
        cron: str,
        action_class: type[Action],
        *args: Any,
        timezone: str = "UTC",
        overlap: str = "skip",
        catch_up: bool = False,
        **kwargs: Any,
    ) -> Schedule:
        """Create or replace the schedule ``name``: a plan of ``action_class`` at each due
        time of the 5-field ``cron`` in ``timezone``, exactly one across all worlds
        (see dynflow.services.schedules for ``overlap`` and ``catch_up``)."""
        return self.scheduler.schedule(
            name,
            cron,
            action_class,
            args,
            kwargs,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
        )

    def schedules(self) -> list[Schedule]:
        """Every schedule with its ``next_run_at``; pause and resume with
        ``world.scheduler.pause(name)`` / ``.resume(name)``."""
        return self.scheduler.all()

    def unschedule(self, name: str) -> bool:
        """Delete the schedule ``name`` (its plans stay); False if there was none."""
        return self.scheduler.unschedule(name)

    def plan_sub_plan(
        self,
        action_class: type[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int],
    ) -> ExecutionPlan:
        """Plan a child plan of action ``caller`` = (plan id, action id) (``WithSubPlans``)."""
        self._require_alive_for(caller[0])
        return self.planner.plan(action_class, args, kwargs, caller=caller)

    def build_sub_plan(
        self,
        action_class: type[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int],
    ) -> BuiltPlan:
        """Plan a child plan of action ``caller`` without saving it (``save_sub_plans``)."""
        self._require_alive_for(caller[0])
        return self.planner.build_sub_plan(action_class, args, kwargs, caller)

    def _require_alive_for(self, plan_id: str) -> None:
        """Alive, or terminating while its executor still runs the plan: a step that
        runs on may finish planning its sub-plans (they start after the hand-over)."""
        if self.executor is None or not self.executor.running(plan_id):
            self.control.require_alive()

    def save_sub_plans(self, built: Sequence[PlanToSave]) -> None:
        """Save child plans made by ``build_sub_plan``, many in one write."""
        self.planner.save_sub_plans(built)

    def start_sub_plan(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Start a planned child plan on a live executor world serving its queues (round robin)."""
        return self.control.hand_out(execution_plan_id)

    def start_sub_plans(self, execution_plan_ids: Sequence[str]) -> list[Future[ExecutionPlan]]:
        """Start planned child plans together: their locks taken and plans read in one
        go, those for this world's executor handed to it directly."""
        return handout.hand_out_many(self.control, execution_plan_ids)

    # -- operations on plans (see dynflow.services.control) ------------------------

    def execute(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Execute a planned plan, resume a paused one, or run a delayed one now."""
        self.coordinator.release(PLANNED_LOCK, execution_plan_id)  # made here: it may run
        return self.control.execute(execution_plan_id)

    def resume(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Resume a paused plan: its failed steps run again."""
        return self.control.resume(execution_plan_id)

    def skip(self, execution_plan_id: str, step_id: int) -> ExecutionPlan:
        """Mark a failed step of a paused plan (and the steps needing its output)
        ``skipped``; resume the plan afterwards, and it ends ``warning``."""
        return self.control.skip(execution_plan_id, step_id)

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Stop a plan at once: no more steps run; it ends ``stopped``/``error`` (a
        ``scheduled`` plan is cancelled instead: ``stopped``/``cancelled``)."""
        return self.control.halt(execution_plan_id)

    def revert(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Undo a paused or stopped plan (each succeeded action's ``revert``, newest first):
        ``stopped``/``reverted``, or ``paused``/``error`` when a revert fails."""
        return reverting.revert(self.control, execution_plan_id)

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any = None, *, optional: bool = False
    ) -> Future[Any]:
        """Deliver ``payload`` to a suspended step (``run(event=payload)``), in order: True
        once it has it; fails (``optional=True``: False) when it cannot take events."""
        return self.control.event(execution_plan_id, step_id, payload, optional=optional)

    def cancel(self, execution_plan_id: str) -> list[Future[Any]]:
        """Cancel a plan: one future per cancellable step (running, suspended, waiting),
        resolved when it has the cancel (a ``scheduled`` plan, or one running in another
        world: one future); running and suspended sub-plans are cancelled too."""
        cancelling = self.control.cancel(execution_plan_id)
        self.finished.cancel_children(execution_plan_id, cancelling)
        return cancelling

    def set_code_version(self, execution_plan_id: str, version: str | None) -> ExecutionPlan:
        """Move a ``planned`` or ``paused`` plan to code ``version`` (None: any executor)."""
        return self.versions.set_code_version(execution_plan_id, version)

    def schedule_step_timeout(
        self, execution_plan_id: str, step_id: int, sequence: int, seconds: float
    ) -> None:
        """Fail the step if still suspended since hand-out ``sequence`` (for actions)."""
        self.control.schedule_step_timeout(execution_plan_id, step_id, sequence, seconds)

    def clean(
        self, older_than: timedelta | datetime, *, results: Iterable[PlanResult | str] | None = None
    ) -> int:
        """Delete stopped plans that ended before ``older_than`` (an aware datetime, or a
        timedelta back from now; only those with one of ``results`` if given), with
        their sub-plans, steps, actions and history, in batches; how many plans went."""
        return self.retention.clean(older_than, results)

    # -- other worlds (see dynflow.services.liveness) ------------------------------

    def ping(self, world_id: str, timeout: float = 5.0) -> Future[bool]:
        """True when ``world_id`` answers in time, else False (unknown id: fails at once)."""
        return self.cluster.ping(world_id, timeout)

    def recover(self) -> int:
        """Pick up plans that no live world executes (of dead worlds, planned and never
        started, paused by a clean termination); returns how many."""
        return self.liveness.recover()

    def perform_validity_checks(self) -> int:
        """Invalidate the worlds whose lease expired (by the database's clock) or whose
        process is gone from this host; returns how many were invalidated."""
        return self.liveness.perform_validity_checks()

    def invalidate(self, world_id: str) -> int:
        """Declare ``world_id`` dead, hand its plans to live executors; how many (0: busy)."""
        return self.liveness.invalidate(world_id) or 0

    # -- lifecycle -------------------------------------------------------------------

    def terminate(self, timeout: float | None = None) -> None:
        """Let running steps finish (up to ``timeout``), pause unfinished plans, unregister."""
        with self._terminate_lock:
            if self._terminated:
                return
            self._terminated = True
        try:
            self.control.stop()
            self.delayed.stop()
            self.retention.stop()
            self.maintenance.stop()
            self.scheduler.stop()
            handed_over: list[str] = []
            if self.executor is not None:
                self.executor.terminate(
                    self.config.terminate_timeout if timeout is None else timeout
                )
                handed_over = self.executor.paused_by_termination()
            self.liveness.stop(handed_over)
            self.cluster.stop()
        finally:
            self.finished.stop()
            self.triggers.stop()
            self.clock.stop()
            self.persistence.close()

    def __repr__(self) -> str:
        return f"<World {self.id} {self.persistence.url}>"
