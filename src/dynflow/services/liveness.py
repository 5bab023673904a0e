"""Liveness: this world's registration and heartbeat, and what happens to dead worlds.

A world's lease is its heartbeat, stamped by the database's clock. A world whose
lease expired (or whose process is gone from this host, or that is late and does
not answer a ping) is invalidated by exactly one live world, under the
``world_invalidation`` lock: its locks are released, its envelopes dropped, its
record deleted, and each plan it held goes to a live executor, which answers the
request that plan was executing under. :meth:`Liveness.recover` also picks up
plans that nobody executes: planned and never started, or paused by a clean
termination.

Each world is judged by its own ``heartbeat_interval`` and ``lease``, kept in its
registry record, not by the checking world's settings.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.clock import Clock, ThreadClock
from dynflow.cluster.client_dispatcher import may_run
from dynflow.cluster.remote import Cluster
from dynflow.coordinator import (
    EXECUTION_LOCK,
    INVALIDATION_LOCK,
    PLANNED_LOCK,
    Coordinator,
    WorldRecord,
)
from dynflow.errors import ConfigurationError, DynflowError, LockTaken, PersistenceError
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.executor import offline
from dynflow.services.control import PlanControl
from dynflow.services.left import RECOVERABLE, last_executor, left_running

if TYPE_CHECKING:
    from dynflow.config import WorldConfig
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: seconds a world declared dead waits for its executor to drop its plans
DISOWN_TIMEOUT = 30.0
#: seconds invalidation waits for the rows of a dead world that another session holds
#: locked (its process stopped inside a transaction) before it gives up until the next
#: check; the database ends such a session after half the world's lease
INVALIDATION_LOCK_WAIT = 2.0


def detection_bound(config: WorldConfig, lease: float | None = None) -> float:
    """Seconds after its last heartbeat within which a world that stopped heartbeating
    is invalidated by a live world checking with ``config`` (``lease``: the dead
    world's own, default the checker's)."""
    return (lease or config.lease) + config.validity_check_interval + config.ping_timeout


class Liveness:
    """Keeps this world registered and alive, and recovers the plans of dead ones.

    Worst-case detection time: a world that stops heartbeating is invalidated at
    most ``lease + validity_check_interval + ping_timeout`` seconds after its last
    heartbeat (its own ``lease``; the checking world's ``validity_check_interval``
    and ``ping_timeout``; :func:`detection_bound`): its record is stale once its
    lease ran out, the next check starts at most ``validity_check_interval`` after
    the previous one ended, and a check spends at most ``ping_timeout`` waiting for
    pings of late worlds. A world on the database connector is usually found
    sooner: late after two of its heartbeat intervals, it does not answer its ping.

    The heartbeat runs on a timer thread of its own (with a real clock): checks of
    other worlds, which wait for pings, never delay it.
    """

    def __init__(
        self,
        ports: Ports,
        control: PlanControl,
        cluster: Cluster,
        connector_kind: str,
    ) -> None:
        self.world_id = ports.world_id
        self.config = ports.config
        self.persistence = ports.persistence
        self.coordinator = ports.coordinator
        self.control = control
        self.cluster = cluster
        self.clock = ports.clock
        self.connector_kind = connector_kind
        self._stopped = False
        #: the heartbeat's own timer thread (a manual clock drives it in tests)
        self._beats: Clock = (
            ThreadClock(f"dynflow-heartbeat-{self.world_id[:8]}")
            if isinstance(self.clock, ThreadClock)
            else self.clock
        )

    # -- this world -----------------------------------------------------------------

    def register(self) -> None:
        """Put this world in the registry again, under a new registration."""
        register(self.coordinator, self.config, self.connector_kind)

    def start(self) -> None:
        """Heartbeats, and periodic checks for dead worlds."""
        self._beats.schedule(self.config.heartbeat_interval, self._beat)
        if self.config.validity_check_interval > 0:
            self.clock.schedule(self.config.validity_check_interval, self._check_validity)

    def stop(self, handed_over: list[str]) -> None:
        """Hand the plans this world paused while terminating to another executor world,
        if any runs (otherwise the next executor to start takes them); unregister."""
        self._stopped = True
        if self._beats is not self.clock:
            self._beats.stop()
        try:
            self.cluster.hand_over(handed_over)
        finally:
            self.coordinator.unregister_world()
            log.info("world %s stopped", self.world_id, extra={"world_id": self.world_id})

    def _beat(self) -> None:
        if self._stopped:
            return
        executor = self.control.executor
        if executor is not None and not executor.alive():
            # never a live heartbeat over a dead executor: the lease runs out and
            # another world invalidates this one and takes its plans over
            log.critical("the executor of world %s died: no more heartbeats", self.world_id)
            return
        try:
            use = executor.pool_use() if executor is not None else None
            if not self.coordinator.heartbeat({"pool_busy": use} if use else None):
                self._declared_dead()
        except DynflowError as exc:
            log.error("heartbeat of world %s failed: %s", self.world_id, exc)
        self._beats.schedule(self.config.heartbeat_interval, self._beat)

    def _declared_dead(self) -> None:
        """Declared dead while alive (cut off longer than its lease): other worlds took
        its plans over. It drops what it held, then registers again, under a new
        registration that its stale writes cannot pass the fence with."""
        log.error(
            "world %s was declared dead: dropping the plans it held, registering again",
            self.world_id,
        )
        executor = self.control.executor
        if executor is None:
            self.register()
            return
        try:
            executor.disown(self.register).result(timeout=DISOWN_TIMEOUT)
        except TimeoutError:
            log.error(
                "world %s: its executor did not drop its plans within %s s; registering "
                "again when it has",
                self.world_id,
                DISOWN_TIMEOUT,
            )

    def _check_validity(self) -> None:
        if self._stopped:
            return
        try:
            self.perform_validity_checks()
        except DynflowError as exc:
            log.error("checking for dead worlds failed: %s", exc)
        self.clock.schedule(self.config.validity_check_interval, self._check_validity)

    # -- other worlds ----------------------------------------------------------------

    def perform_validity_checks(self) -> int:
        """Invalidate the worlds whose lease expired (by the database's clock), whose
        process is gone from this host, or that missed two heartbeats and do not answer
        a ping; returns how many were invalidated."""
        dead = self.coordinator.find_stale_worlds(self.config.lease)
        dead += self._silent(exclude={w.id for w in dead})
        dying = frozenset(w.id for w in dead)
        return sum(1 for world in dead if self.invalidate(world.id, dying) is not None)

    def _silent(self, exclude: set[str]) -> list[WorldRecord]:
        """Worlds late with their heartbeat that do not answer a ping either. Only
        worlds on the database connector are pinged, and only by one: others cannot
        hear each other across processes."""
        if not self.cluster.connector.reaches_other_processes:
            return []
        now = self.coordinator.database_now()
        suspects = [
            record
            for record in self.coordinator.find_worlds()
            if record.id != self.world_id
            and record.id not in exclude
            and record.meta.get("connector") == "database"
            and record.heartbeat_at is not None
            and record.heartbeat_at < now - timedelta(seconds=2 * self._interval(record))
        ]
        timeout = self.config.ping_timeout
        pings = [(r, self.cluster.ping(r.id, timeout=timeout)) for r in suspects]
        # waited for here, not by the requests' own timeouts: those are checked on
        # this clock's thread, which may be the one waiting
        deadline = time.monotonic() + timeout
        silent = []
        for record, answer in pings:
            try:
                if not answer.result(timeout=max(deadline - time.monotonic(), 0)):
                    silent.append(record)
            except Exception:  # gone meanwhile, or no answer in time
                silent.append(record)
        return silent

    def _interval(self, record: WorldRecord) -> float:
        """The world's own heartbeat interval (this world's for records without one)."""
        return record.heartbeat_interval or self.config.heartbeat_interval

    def invalidate(self, world_id: str, dying: frozenset[str] = frozenset()) -> int | None:
        """Declare ``world_id`` dead and take its plans over: how many (None when
        another world is invalidating it). ``dying``: other worlds found dead, about to
        be invalidated too: none of its plans is sent there."""
        if world_id == self.world_id:
            raise ConfigurationError("a world cannot invalidate itself: terminate it")
        try:  # exactly one live world invalidates a dead one
            self.coordinator.acquire(INVALIDATION_LOCK, world_id)
        except LockTaken:
            return None
        try:
            if world_id not in {w.id for w in self.coordinator.find_worlds()}:
                return None  # another world invalidated it a moment ago
            held = self.coordinator.find_locks(lock_class=EXECUTION_LOCK, owner_id=world_id)
            log.warning(
                "world %s is gone: invalidated, recovering its %d plan(s)",
                world_id,
                len(held),
                extra={"world_id": world_id, "invalidated_by": self.world_id},
            )
            try:
                self.coordinator.unregister_world(world_id, lock_wait=INVALIDATION_LOCK_WAIT)
            except PersistenceError as exc:
                # its process stopped inside a transaction: the database ends that
                # session (idle_in_transaction) before long; the next check retries
                log.warning("cannot invalidate world %s yet: %s", world_id, exc)
                return None
            self.cluster.drop_envelopes(world_id)
            self.cluster.wake_limits(self.persistence.limits.drop_world(world_id))
            avoid = dying | {world_id}
            return sum(self.take_over(lock.id, world_id, dict(lock.data), avoid) for lock in held)
        finally:
            self.coordinator.release(INVALIDATION_LOCK, world_id)

    def take_over(
        self,
        plan_id: str,
        dead_world: str,
        requester: dict[str, Any],
        avoid: frozenset[str] = frozenset(),
    ) -> bool:
        """Run a dead world's plan here (or hand it to an executor world, not one of
        ``avoid``), answering the original request so that the caller's future still
        resolves."""
        executor = self.control.executor
        if executor is None:
            if self.cluster.forward_execution(plan_id, requester, avoid):
                return True
            self._pause(plan_id)  # no executor alive: it waits, paused
            return False
        try:
            plan = self.control.locked_plan(plan_id, RECOVERABLE, requester)
        except DynflowError:
            return False
        if not may_run(self.config.code_version, plan.code_version):
            # another version's: to an executor of it, or it waits for one
            self.coordinator.release(EXECUTION_LOCK, plan_id)
            if self.cluster.forward_execution(plan_id, requester, avoid):
                return True
            self._pause(plan_id)
            return False
        log.info(
            "world %s takes over execution plan %s (%s) of dead world %s",
            self.world_id,
            plan_id,
            plan.label,
            dead_world,
            extra={"plan_id": plan_id, "world_id": self.world_id, "dead_world_id": dead_world},
        )
        future = executor.recover(plan, dead_world, plan.state is PlanState.RUNNING)
        self.cluster.answer_when_done(requester, future, withhold=self.control.handing_over)
        return True

    def _pause(self, plan_id: str) -> None:
        """Mark a dead world's plan paused while no executor runs, so that it is not shown
        ``running`` with nobody running it; the next executor to start recovers it."""
        try:
            plan = self.control.locked_plan(plan_id, (PlanState.RUNNING,))
        except DynflowError:
            return  # not running, or an executor took it meanwhile
        try:
            offline.pause(
                self.persistence, self.world_id, plan, registration=self.coordinator.registration()
            )
            log.warning("no executor world is running: plan %s waits, paused", plan_id)
        except DynflowError as exc:
            log.error("cannot pause plan %s: %s", plan_id, exc)
        finally:
            self.coordinator.release(EXECUTION_LOCK, plan_id)

    def recover(self) -> int:
        """Pick up plans that no live world executes: those of worlds found dead, plans
        planned and never started, and plans paused by a world's clean termination
        (not by a failure). Returns how many."""
        executor = self.control.require_executor()
        stale = self.coordinator.find_stale_worlds(self.config.lease)
        dying = frozenset(w.id for w in stale)
        count = sum(self.invalidate(world.id, dying) or 0 for world in stale)
        # a plan made with world.plan() waits for execute while its planning world lives
        held = {
            lock.id
            for lock_class in (EXECUTION_LOCK, PLANNED_LOCK)
            for lock in self.coordinator.find_locks(lock_class=lock_class)
        }
        # plans of another code version wait for an executor of theirs; planned
        # sub-plans wait for their parent, which starts them within its limit
        find = partial(self.persistence.find_plan_ids, runnable_by=self.config.code_version)
        candidates = find([PlanState.RUNNING])
        candidates += find([PlanState.PLANNED], sub_plans=False)
        candidates += find([PlanState.PAUSED], result=PlanResult.PENDING)
        for plan_id in candidates:
            if plan_id in held:
                continue
            try:
                plan = self.control.locked_plan(plan_id, RECOVERABLE)
            except DynflowError:
                continue  # another world took it first
            if not may_run(self.config.code_version, plan.code_version):  # moved meanwhile
                self.coordinator.release(EXECUTION_LOCK, plan_id)
                continue
            log.warning("recovering execution plan %s (%s)", plan_id, plan.state)
            running = left_running(plan)
            executor.recover(plan, last_executor(plan) if running else None, running)
            count += 1
        return count


def register(coordinator: Coordinator, config: WorldConfig, connector_kind: str) -> None:
    """Put a world in the registry, with what other worlds need to know of it."""
    log.info(
        "world %s starts (%s)",
        coordinator.world_id,
        "executor of " + ", ".join(config.all_queues) if config.executor else "client",
        extra={"world_id": coordinator.world_id},
    )
    coordinator.register_world(
        executor=config.executor,
        queues=config.all_queues if config.executor else (),
        heartbeat_interval=config.heartbeat_interval,
        lease=config.lease,
        meta={
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            # other worlds ping it only when it can hear them
            "connector": connector_kind,
            # executors of a code version run only plans of it (or of none)
            "code_version": config.code_version,
            # worker threads per queue; "pool_busy" (those running a step, per
            # queue) is renewed at each heartbeat
            **(
                {
                    "pool_sizes": dict(config.all_queues),
                    "pool_busy": dict.fromkeys(config.all_queues, 0),
                }
                if config.executor
                else {}
            ),
            **config.meta,
        },
    )
