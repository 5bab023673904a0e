"""Recovery: plans nobody executes any more, and worlds that died.

A world's lease is its heartbeat, stamped by the database's clock. A world whose
lease expired (or whose process is gone from this host) is invalidated by exactly
one live world, under the ``world_invalidation`` lock: its locks are released, its
envelopes dropped, its record deleted, and each plan it held goes to a live
executor, which answers the request that plan was executing under.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dynflow.cluster.connector.database import DatabaseConnector
from dynflow.coordinator import EXECUTION_LOCK, INVALIDATION_LOCK, WorldRecord
from dynflow.errors import ConfigurationError, DynflowError, LockTaken
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanResult, PlanState

if TYPE_CHECKING:
    from dynflow.world import World

log = logging.getLogger(__name__)

#: seconds a world late with its heartbeat gets to answer a ping
PING_TIMEOUT = 2.0

#: states of plans that ``recover`` may pick up (paused: only paused by a termination)
RECOVERABLE = (PlanState.RUNNING, PlanState.PLANNED, PlanState.PAUSED)


class Recovery:
    def __init__(self, world: World) -> None:
        self.world = world

    def recover(self) -> int:
        """Pick up plans that no live world executes: those of worlds found dead (see
        :meth:`perform_validity_checks`), plans planned and never started, and plans
        paused by a world's clean termination (not by a failure). Returns how many."""
        executor = self.world._require_executor()
        count = sum(
            self.invalidate(world.id) or 0
            for world in self.world.coordinator.find_stale_worlds(self.world.config.lease)
        )
        held = {lock.id for lock in self.world.coordinator.find_locks(lock_class=EXECUTION_LOCK)}
        # planned sub-plans wait for their parent, which starts them within its limit
        candidates = self.world.persistence.find_plan_ids([PlanState.RUNNING])
        candidates += self.world.persistence.find_plan_ids([PlanState.PLANNED], sub_plans=False)
        candidates += self.world.persistence.find_plan_ids(
            [PlanState.PAUSED], result=PlanResult.PENDING
        )
        for plan_id in candidates:
            if plan_id in held:
                continue
            try:
                plan = self.world._locked_plan(plan_id, RECOVERABLE)
            except DynflowError:
                continue  # another world took it first
            log.warning("recovering execution plan %s (%s)", plan_id, plan.state)
            running = plan.state is PlanState.RUNNING
            executor.recover(plan, last_executor(plan) if running else None, running)
            count += 1
        return count

    def perform_validity_checks(self) -> int:
        """Invalidate the worlds whose lease expired (by the database's clock), whose
        process is gone from this host, or that missed two heartbeats and do not answer
        a ping; returns how many were invalidated."""
        dead = self.world.coordinator.find_stale_worlds(self.world.config.lease)
        dead += self._silent(exclude={w.id for w in dead})
        invalidated = 0
        for world in dead:
            if self.invalidate(world.id) is not None:
                invalidated += 1
        return invalidated

    def _silent(self, exclude: set[str]) -> list[WorldRecord]:
        """Worlds late with their heartbeat that do not answer a ping either. Only
        worlds on the database connector are pinged, and only by one: others cannot
        hear each other across processes."""
        world = self.world
        if not isinstance(world.connector, DatabaseConnector):
            return []
        late = world.coordinator.database_now() - timedelta(
            seconds=2 * world.config.heartbeat_interval
        )
        suspects = [
            record
            for record in world.coordinator.find_worlds()
            if record.id != world.id
            and record.id not in exclude
            and record.meta.get("connector") == "database"
            and record.heartbeat_at is not None
            and record.heartbeat_at < late
        ]
        pings = [(record, world.ping(record.id, timeout=PING_TIMEOUT)) for record in suspects]
        silent = []
        for record, answer in pings:
            try:
                if not answer.result(timeout=PING_TIMEOUT + 5):
                    silent.append(record)
            except Exception:  # gone meanwhile, or no answer at all
                silent.append(record)
        return silent

    def invalidate(self, world_id: str) -> int | None:
        if world_id == self.world.id:
            raise ConfigurationError("a world cannot invalidate itself: terminate it")
        try:  # exactly one live world invalidates a dead one
            self.world.coordinator.acquire(INVALIDATION_LOCK, world_id)
        except LockTaken:
            return None
        try:
            if world_id not in {w.id for w in self.world.coordinator.find_worlds()}:
                return None  # another world invalidated it a moment ago
            held = self.world.coordinator.find_locks(lock_class=EXECUTION_LOCK, owner_id=world_id)
            log.warning("world %s is gone: recovering its %d plan(s)", world_id, len(held))
            self.world.coordinator.unregister_world(world_id)
            self.world.remote.drop_envelopes(world_id)
            return sum(self.take_over(lock.id, world_id, dict(lock.data)) for lock in held)
        finally:
            self.world.coordinator.release(INVALIDATION_LOCK, world_id)

    def take_over(self, plan_id: str, dead_world: str, requester: dict[str, Any]) -> bool:
        """Run a dead world's plan here (or hand it to an executor world), answering the
        original request so that the caller's future still resolves."""
        if self.world.executor is None:
            return self.world.remote.forward_execution(plan_id, requester)
        try:
            plan = self.world._locked_plan(plan_id, RECOVERABLE, requester)
        except DynflowError:
            return False
        future = self.world.executor.recover(plan, dead_world, plan.state is PlanState.RUNNING)
        self.world.remote.answer_when_done(requester, future)
        return True

    def hand_over(self, plan_ids: list[str]) -> None:
        """Plans this world paused while terminating go to another executor world, if any
        runs (otherwise the next executor to start picks them up)."""
        for plan_id in plan_ids:
            self.world.remote.execute(plan_id)


def last_executor(plan: ExecutionPlan) -> str | None:
    """The world that last started executing the plan (the one that died, when the plan
    was left running): named by the ``terminate execution`` history entry."""
    starts = [e.world_id for e in plan.execution_history if e.name == "start execution"]
    return starts[-1] if starts else None
