"""The persistence port: what the engine, the cluster and the public API ask of storage.

The adapters (``sql`` for SQLAlchemy Core on any database, ``postgres`` with its
fast paths) implement it; nothing outside them knows which database is behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence.changes import Changes
from dynflow.persistence.delayed import DelayedPlanStore
from dynflow.persistence.limits import LimitEntry, LimitStore
from dynflow.persistence.records import TakeOver
from dynflow.persistence.schedules import ScheduleStore
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sub_plans import SubPlanRound


class Listener(Protocol):
    """Wake-ups for one world's envelopes."""

    def wait(self, timeout: float) -> None:
        """Return on a wake-up, or after ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class EnvelopeStore(Protocol):
    """Envelopes between worlds (their text encoded by the connector)."""

    def send(self, receiver_id: str, data: str) -> bool:
        """Write an envelope if its receiver is a registered world; True when written."""
        ...

    def send_many(self, batch: Sequence[tuple[str, str]]) -> set[str]:
        """Write (receiver id, text) envelopes in order, each only for a registered
        receiver; the receivers that are not."""
        ...

    def claim(self, world_id: str, limit: int, durable: bool = True) -> list[tuple[int, str]]:
        """Take (and delete) up to ``limit`` envelopes of ``world_id``, oldest first.
        ``durable=False``: the deletion may be lost if the database crashes before its
        next durable commit (the envelopes are then read again), where the database
        can commit without waiting for its disk: for receivers to whom an envelope read
        twice does no harm."""
        ...

    def drop_orphans(self) -> int:
        """Delete the envelopes of worlds no longer registered; how many."""
        ...

    def drop_for(self, world_id: str) -> int:
        """Delete the envelopes of ``world_id``; how many."""
        ...

    def pending(self) -> dict[str, int]:
        """How many envelopes wait for each receiver (one grouped query)."""
        ...

    def listen(self, world_id: str) -> Listener | None:
        """Wake-ups for ``world_id``'s envelopes; None when the receiver must poll."""
        ...

    def wake(self, world_id: str) -> None:
        """End a wait of ``world_id``'s listener."""
        ...


class PersistencePort(Protocol):
    """Durable state of execution plans. Locks are coordinator rows (class, id,
    owner_id, data)."""

    @property
    def db(self) -> Database:
        """Engines and transactions, for the coordinator and migrations."""
        ...

    @property
    def delayed(self) -> DelayedPlanStore: ...

    @property
    def envelopes(self) -> EnvelopeStore: ...

    @property
    def limits(self) -> LimitStore:
        """Holders and waiters of ``dynflow.Limit`` keys, over every world."""
        ...

    def find_limits(
        self, *, key: str | None = None, execution_plan_id: str | None = None
    ) -> list[LimitEntry]:
        """Holders and waiters by key: holders first, then waiters in line (see
        :class:`~dynflow.persistence.limits.LimitEntry`); with ``execution_plan_id``,
        only that plan's."""
        ...

    @property
    def schedules(self) -> ScheduleStore:
        """Schedules: recurring plans by cron expression."""
        ...

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        ...

    @property
    def default_connector(self) -> str:
        """The connector worlds on this database use unless configured: ``direct``
        (in memory, one process) or ``database`` (envelopes in the database)."""
        ...

    def migrate(self) -> None: ...

    def close(self) -> None: ...

    def save_new_plan(
        self,
        plan: ExecutionPlan,
        *,
        locks: Sequence[Mapping[str, Any]] = (),
        envelope: tuple[str, str] | None = None,
    ) -> bool:
        """Insert a freshly planned plan with the ``locks`` it takes, at once, and
        ``envelope`` (receiver id, text) if its receiver is registered (True when it
        was written). Raises :class:`~dynflow.errors.LockTaken` (writing nothing) when
        a lock is held."""
        ...

    def save_new_plans(
        self, plans: Sequence[ExecutionPlan], *, locks: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Insert many freshly planned plans with the ``locks`` they take in one write
        (sub-plans planned in a batch). Raises :class:`~dynflow.errors.LockTaken`
        (writing nothing) when a lock is held."""
        ...

    def load_execution_plans(self, execution_plan_ids: Sequence[str]) -> list[ExecutionPlan]:
        """The plans found among these ids, each with its steps, actions and history."""
        ...

    def lock_and_load_execution_plans(
        self, owner_id: str, execution_plan_ids: Sequence[str]
    ) -> list[ExecutionPlan]:
        """Take the execution locks of these plans for world ``owner_id`` and read the
        plans found, as ``load_execution_plans``, in one write; raises
        :class:`LockTaken` (and takes none) if someone holds one of the locks."""
        ...

    def apply(self, changes: Changes) -> None:
        """Write a batch of changes in one transaction."""
        ...

    def apply_fenced(self, changes: Changes, owner: str, registration: str) -> set[str]:
        """Write the changes of the plans whose execution lock ``owner`` still holds,
        while ``owner``'s world record is still registration ``registration`` (its
        token); the plans fenced off (nothing of theirs is written)."""
        ...

    def load_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """The plan with its steps, actions and history; raises ``NotFound``."""
        ...

    def take_over_plan(
        self,
        plan_id: str,
        from_owner: str,
        owner: str,
        lock_data: Mapping[str, Any],
        reply: tuple[str, str] | None = None,
    ) -> tuple[bool, ExecutionPlan | None, bool]:
        """Move the plan's execution lock from ``from_owner`` to ``owner``: (moved?, the
        plan if the adapter read it with the move, ``reply`` written with it?)."""
        ...

    def take_over_plans(
        self, owner: str, requests: Sequence[TakeOver]
    ) -> list[tuple[bool, ExecutionPlan | None, bool]]:
        """:meth:`take_over_plan` for each request, in order (one statement for them all
        where the adapter can)."""
        ...

    def find_execution_plans(
        self,
        filters: Mapping[str, Any] | None = None,
        order_by: str = "started_at",
        desc: bool = True,
        page: int | None = None,
        per_page: int | None = None,
    ) -> list[ExecutionPlan]: ...

    def find_execution_plan(self, execution_plan_id: str) -> ExecutionPlan: ...

    def load_plan_steps(self, execution_plan_ids: Sequence[str]) -> dict[str, ExecutionPlan]:
        """The plans of these ids that exist, with their steps but without their
        actions and history, in a few queries whatever their number (live views)."""
        ...

    def find_execution_plan_counts_by_state(
        self,
        filters: Mapping[str, Any] | None = None,
        cap: int | None = None,
        limit: int | None = None,
    ) -> dict[PlanState, int]:
        """Plans matching ``filters`` in each state; with ``cap``, a count stops at
        ``cap + 1`` (more than ``cap``: at least that many); with ``limit``, at most
        that many plans are read (counts adding up to it are lower bounds)."""
        ...

    def find_execution_plan_counts(self, filters: Mapping[str, Any] | None = None) -> int: ...

    def sub_plan_round(
        self, execution_plan_id: str, action_id: int, limit: int | None
    ) -> SubPlanRound:
        """The sub-plans of that action: how many are in each (state, result); how many
        planned ones are being started (they hold their execution lock); the ids of
        planned ones not being started that may start under ``limit`` (at most ``limit``
        minus those running or being started; all of them when ``limit`` is None)."""
        ...

    def count_sub_plans(
        self, execution_plan_id: str, action_id: int
    ) -> dict[tuple[PlanState, PlanResult], int]: ...

    def run_step_id(self, execution_plan_id: str, action_id: int) -> int | None: ...

    def steps_finished_per_minute(self, since: datetime) -> dict[datetime, int]:
        """How many steps ended in each minute since ``since`` (keys: UTC minutes)."""
        ...

    def failed_steps_by_action(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        """(action class, how many of its steps failed since ``since``), most first."""
        ...

    def entry_action_classes(self, execution_plan_ids: Sequence[str]) -> dict[str, str]:
        """The class of each plan's entry action, by plan id (one query)."""
        ...

    def record_history(self, execution_plan_id: str, name: str, world_id: str | None) -> None:
        """Add an entry to the plan's execution history, stamped now (UTC)."""
        ...

    def set_code_version(
        self, execution_plan_id: str, code_version: str | None, world_id: str | None
    ) -> None:
        """Move the plan to ``code_version``, with a history entry saying from which
        (one transaction); raises ``NotFound``."""
        ...

    def plan_id_with_key(self, key: str) -> str | None:
        """The id of the plan with idempotency ``key``, if any."""
        ...

    def find_plan_ids(
        self,
        states: Iterable[PlanState],
        *,
        sub_plans: bool = True,
        result: PlanResult | None = None,
        runnable_by: str | None = None,
    ) -> list[str]:
        """Ids of plans in ``states`` (and ``result``); ``sub_plans=False`` leaves out
        plans with a caller; ``runnable_by``: only the plans an executor of that code
        version runs (of that version or of none)."""
        ...

    def maintain(self) -> list[str]:
        """Upkeep of the database's own that the engine's tables need now (statistics,
        dead rows) and that it may be behind with; the tables it did (none where the
        database keeps up by itself)."""
        ...

    def delete_old_plans(
        self,
        before: datetime,
        results: Sequence[PlanResult] | None = None,
        *,
        after: str | None = None,
        limit: int = 500,
        dry_run: bool = False,
    ) -> tuple[int, str | None]:
        """Delete one batch of top-level plans stopped before ``before``, with their
        sub-plans: (how many plans, the last id looked at or None when done)."""
        ...
