"""The generic persistence adapter: SQLAlchemy Core, on SQLite, MySQL/MariaDB or any database.

Plans, steps, actions and history are written here; envelopes and delayed plans
have stores of their own (``envelopes``, ``delayed``). The PostgreSQL adapter
subclasses this one and overrides the hooks it has faster paths for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.errors import NotFound
from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence import migrate
from dynflow.persistence.changes import PLAN_MUTABLE, STEP_MUTABLE, Changes
from dynflow.persistence.limits import LimitEntry
from dynflow.persistence.records import EXECUTION_LOCK, PLANNED_LOCK, WORLD, TakeOver
from dynflow.persistence.sql import live, loading, retention, stats, sub_plans
from dynflow.persistence.sql.bulk import BulkWriter, Delete, Insert, Operation, Update
from dynflow.persistence.sql.database import IDLE_IN_TRANSACTION, Database
from dynflow.persistence.sql.delayed import SqlDelayedPlanStore
from dynflow.persistence.sql.envelopes import SqlEnvelopeStore
from dynflow.persistence.sql.limits import SqlLimitStore
from dynflow.persistence.sql.locks import move_execution_lock, taken
from dynflow.persistence.sql.mapping import (
    action_from_row,
    history_from_row,
    plan_from_row,
    plan_rows,
    step_from_row,
)
from dynflow.persistence.sql.queries import (
    capped_counts_query,
    conditions,
    plans_query,
    runnable,
)
from dynflow.persistence.sql.schedules import SqlScheduleStore
from dynflow.persistence.sub_plans import SubPlanRound
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    execution_history,
    execution_plans,
    steps,
)

_BY_KEY = sa.select(execution_plans.c.id).where(execution_plans.c.key == sa.bindparam("key"))


class SqlPersistence:
    """Durable state of execution plans; one instance per world.

    Open one with :func:`dynflow.persistence.open_persistence`, which picks the
    adapter for the URL's database.
    """

    def __init__(
        self, database_url: str, *, idle_in_transaction: float | None = IDLE_IN_TRANSACTION
    ) -> None:
        self.db = self._open(database_url, idle_in_transaction)
        self.bulk = self._bulk_writer()
        #: delayed plans: scheduled plans and when to plan them
        self.delayed = SqlDelayedPlanStore(self.db, self.bulk)
        #: envelopes between worlds (the database connector's storage)
        self.envelopes = self._envelope_store()
        #: holders and waiters of limits (``dynflow.Limit``)
        self.limits = SqlLimitStore(self.db)
        #: recurring plans
        self.schedules = SqlScheduleStore(self.db)

    # -- hooks of the adapters ------------------------------------------------

    def _open(self, database_url: str, idle_in_transaction: float | None) -> Database:
        return Database(database_url, idle_in_transaction=idle_in_transaction)

    def _bulk_writer(self) -> BulkWriter:
        return BulkWriter()

    def _envelope_store(self) -> SqlEnvelopeStore:
        return SqlEnvelopeStore(self.db)

    @property
    def default_connector(self) -> str:
        return self.db.dialect.default_connector

    @property
    def url(self) -> str:
        return self.db.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        self.db.check_connection()
        migrate.upgrade(self.db)

    def close(self) -> None:
        self.db.dispose()

    # -- writing ------------------------------------------------------------

    def save_new_plan(
        self,
        plan: ExecutionPlan,
        *,
        locks: Sequence[Mapping[str, Any]] = (),
        envelope: tuple[str, str] | None = None,
    ) -> bool:
        row, action_rows, step_rows = plan_rows(plan)
        operations: list[Operation] = [
            Insert(execution_plans, [row]),
            Insert(actions, action_rows),
            Insert(steps, step_rows),
            Insert(coordinator_records, locks),
        ]
        try:
            return self._insert(operations, envelope)
        except sa.exc.IntegrityError:
            raise taken(self.db, plan, locks) from None

    def save_new_plans(
        self, plans: Sequence[ExecutionPlan], *, locks: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Insert new plans with the ``locks`` they take in one write (one statement per
        table, one on PostgreSQL); :class:`LockTaken`, nothing written, if one is held."""
        try:
            if plans:
                self._insert(loading.new_plans_operations(plans, locks), None)
        except sa.exc.IntegrityError:
            raise taken(self.db, plans[0], locks) from None

    def _insert(self, operations: Sequence[Operation], envelope: tuple[str, str] | None) -> bool:
        """Write a new plan's rows and its envelope in one transaction."""
        with self.db.write_statement() as connection:
            self.bulk.write(connection, operations)
            if envelope is None:
                return False
            return self.envelopes.send_in(connection, *envelope)

    def apply(self, changes: Changes, connection: sa.Connection | None = None) -> None:
        """Write a batch of changes in one transaction (the caller's, if given)."""
        if connection is None:
            with self.db.write_statement() as own:
                self.bulk.write(own, change_operations(changes))
        else:
            self.bulk.write(connection, change_operations(changes))

    def apply_fenced(self, changes: Changes, owner: str, registration: str) -> set[str]:
        plan_ids = changes.plan_ids()
        if not plan_ids:
            self.apply(changes)
            return set()
        return self._apply_fenced(changes, owner, registration, plan_ids)

    def _apply_fenced(
        self, changes: Changes, owner: str, registration: str, plan_ids: set[str]
    ) -> set[str]:
        with self.db.write() as connection:
            # the registration is read as committed now: a world that registered
            # again since has another token (its record is not locked: heartbeats
            # would wait for every commit)
            world = connection.execute(
                sa.select(coordinator_records.c.data).where(
                    coordinator_records.c["class"] == WORLD, coordinator_records.c.id == owner
                )
            ).scalar_one_or_none()
            if world is None or world.get("token") != registration:
                for plan_id in plan_ids:
                    changes.drop_plan(plan_id)
                self.bulk.write(connection, change_operations(changes))
                return plan_ids
            query = (
                sa.select(coordinator_records.c.id)
                .where(
                    coordinator_records.c["class"] == EXECUTION_LOCK,
                    coordinator_records.c.owner_id == owner,
                    coordinator_records.c.id.in_(sorted(plan_ids)),
                )
                .with_for_update(read=True)  # nobody takes them until this commits
            )
            fenced = plan_ids - set(connection.execute(query).scalars())
            for plan_id in fenced:
                changes.drop_plan(plan_id)
            self.bulk.write(connection, change_operations(changes))
            for receiver_id, data in changes.answers.values():
                self.envelopes.send_in(connection, receiver_id, data)
        return fenced

    def take_over_plan(
        self,
        plan_id: str,
        from_owner: str,
        owner: str,
        lock_data: Mapping[str, Any],
        reply: tuple[str, str] | None = None,
    ) -> tuple[bool, ExecutionPlan | None, bool]:
        """Here only the lock moves: the caller reads the plan and sends ``reply``."""
        return self.take_over_plans(owner, [TakeOver(plan_id, from_owner, lock_data, reply)])[0]

    def take_over_plans(
        self, owner: str, requests: Sequence[TakeOver]
    ) -> list[tuple[bool, ExecutionPlan | None, bool]]:
        """The locks move in one transaction; the caller reads the plans, sends replies."""
        with self.db.write() as connection:
            moved = [
                move_execution_lock(connection, r.plan_id, r.from_owner, owner, r.lock_data)
                for r in requests
            ]
        return [(m, None, False) for m in moved]

    # -- reading ------------------------------------------------------------

    def load_execution_plans(self, execution_plan_ids: Sequence[str]) -> list[ExecutionPlan]:
        with self.db.snapshot() as connection:  # together, as of one moment
            return loading.load_plans(connection, execution_plan_ids)

    def lock_and_load_execution_plans(
        self, owner_id: str, execution_plan_ids: Sequence[str]
    ) -> list[ExecutionPlan]:
        return loading.lock_and_load(self.db, owner_id, execution_plan_ids)

    def load_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """The plan with its steps, actions and history, as of one moment; raises
        :class:`NotFound`."""
        with self.db.snapshot() as connection:
            row = connection.execute(
                sa.select(execution_plans).where(execution_plans.c.id == execution_plan_id)
            ).one_or_none()
            if row is None:
                raise NotFound(f"execution plan {execution_plan_id} not found")
            plan = plan_from_row(row._mapping)
            plan._details = self._details(connection, execution_plan_id)
        return plan

    def _details(self, connection: sa.Connection, plan_id: str) -> PlanDetails:
        step_rows = connection.execute(
            sa.select(steps).where(steps.c.execution_plan_id == plan_id).order_by(steps.c.id)
        )
        action_rows = connection.execute(
            sa.select(actions).where(actions.c.execution_plan_id == plan_id).order_by(actions.c.id)
        )
        history_rows = connection.execute(
            sa.select(execution_history)
            .where(execution_history.c.execution_plan_id == plan_id)
            .order_by(execution_history.c.id)
        )
        return PlanDetails(
            steps={r.id: step_from_row(r._mapping) for r in step_rows},
            actions=[action_from_row(r._mapping) for r in action_rows],
            history=[history_from_row(r._mapping) for r in history_rows],
        )

    def _lazy_details(self, plan_id: str) -> PlanDetails:
        with self.db.snapshot() as connection:
            return self._details(connection, plan_id)

    def find_execution_plans(
        self,
        filters: Mapping[str, Any] | None = None,
        order_by: str = "started_at",
        desc: bool = True,
        page: int | None = None,
        per_page: int | None = None,
    ) -> list[ExecutionPlan]:
        """Plans matching ``filters``; steps and actions load on first access."""
        query = plans_query(self.db.dialect, filters, order_by, desc, page, per_page)
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        plans = []
        for row in rows:
            plan = plan_from_row(row._mapping)
            plan._details = lambda plan_id=plan.id: self._lazy_details(plan_id)
            plans.append(plan)
        return plans

    def load_plan_steps(self, execution_plan_ids: Sequence[str]) -> dict[str, ExecutionPlan]:
        return live.load_plan_steps(self.db, execution_plan_ids)

    def find_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """The plan's row now, its steps, actions and history on first access (one query
        instead of four); raises :class:`NotFound`."""
        found = self.find_execution_plans(filters={"id": execution_plan_id})
        if not found:
            raise NotFound(f"execution plan {execution_plan_id} not found")
        return found[0]

    def find_execution_plan_counts_by_state(
        self,
        filters: Mapping[str, Any] | None = None,
        cap: int | None = None,
        limit: int | None = None,
    ) -> dict[PlanState, int]:
        """How many plans matching ``filters`` are in each state (one query). With
        ``cap``, a count stops at ``cap + 1``: more than ``cap`` means "at least".
        With ``limit``, at most that many matching plans are read: counts adding up
        to ``limit`` are lower bounds."""
        if cap is not None:
            with self.db.read() as connection:
                row = connection.execute(capped_counts_query(filters, cap)).one()
            return {state: int(row._mapping[str(state)]) for state in PlanState}
        matching = sa.select(execution_plans.c.state).where(*conditions(filters))
        if limit is not None:
            matching = matching.limit(limit)
        found = matching.subquery()
        query = sa.select(found.c.state, sa.func.count()).group_by(found.c.state)
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        counts = dict.fromkeys(PlanState, 0)
        counts.update({PlanState(state): int(n) for state, n in rows})
        return counts

    def find_limits(
        self, *, key: str | None = None, execution_plan_id: str | None = None
    ) -> list[LimitEntry]:
        return self.limits.find(key=key, execution_plan_id=execution_plan_id)

    def find_execution_plan_counts(self, filters: Mapping[str, Any] | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(execution_plans).where(*conditions(filters))
        with self.db.read() as connection:
            return int(connection.execute(query).scalar_one())

    def steps_finished_per_minute(self, since: datetime) -> dict[datetime, int]:
        return stats.steps_finished_per_minute(self.db, since)

    def failed_steps_by_action(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        return stats.failed_steps_by_action(self.db, since, limit)

    def entry_action_classes(self, execution_plan_ids: Sequence[str]) -> dict[str, str]:
        return stats.entry_action_classes(self.db, execution_plan_ids)

    def record_history(self, execution_plan_id: str, name: str, world_id: str | None) -> None:
        entry = (execution_plan_id, datetime.now(UTC), name[:50], world_id)
        self.apply(Changes(history=[entry]))

    def set_code_version(
        self, execution_plan_id: str, code_version: str | None, world_id: str | None
    ) -> None:
        column = execution_plans.c.code_version
        plan = execution_plans.c.id == execution_plan_id
        with self.db.write() as connection:
            old = connection.execute(sa.select(column).where(plan)).one_or_none()
            if old is None:
                raise NotFound(f"execution plan {execution_plan_id} not found")
            connection.execute(
                sa.update(execution_plans).where(plan).values(code_version=code_version)
            )
            name = f"code version {old[0] or '-'} -> {code_version or '-'}"
            entry = (execution_plan_id, datetime.now(UTC), name[:50], world_id)
            self.bulk.write(connection, change_operations(Changes(history=[entry])))
            # moved on purpose: an executor of the new version may pick it up now
            connection.execute(
                sa.delete(coordinator_records).where(
                    coordinator_records.c["class"] == PLANNED_LOCK,
                    coordinator_records.c.id == execution_plan_id,
                )
            )

    def count_sub_plans(
        self, execution_plan_id: str, action_id: int
    ) -> dict[tuple[PlanState, PlanResult], int]:
        """How many sub-plans of that action are in each (state, result)."""
        with self.db.read() as connection:
            rows = connection.execute(sub_plans.counts_query(execution_plan_id, action_id)).all()
        return {(PlanState(state), PlanResult(result)): int(n) for state, result, n in rows}

    def sub_plan_round(
        self, execution_plan_id: str, action_id: int, limit: int | None
    ) -> SubPlanRound:
        """The action's children: counts, those being started, those that may start."""
        with self.db.read() as connection:
            return sub_plans.read_round(connection, execution_plan_id, action_id, limit)

    def run_step_id(self, execution_plan_id: str, action_id: int) -> int | None:
        query = sa.select(actions.c.run_step_id).where(
            actions.c.execution_plan_id == execution_plan_id, actions.c.id == action_id
        )
        with self.db.read() as connection:
            step_id: int | None = connection.execute(query).scalar_one_or_none()
        return step_id

    def find_plan_ids(
        self,
        states: Iterable[PlanState],
        *,
        sub_plans: bool = True,
        result: PlanResult | None = None,
        runnable_by: str | None = None,
    ) -> list[str]:
        """Ids of plans in ``states`` (and ``result``); ``sub_plans=False`` leaves out
        plans with a caller; ``runnable_by``: only those of that code version or none."""
        query = sa.select(execution_plans.c.id).where(
            execution_plans.c.state.in_([str(s) for s in states])
        )
        if result is not None:
            query = query.where(execution_plans.c.result == str(result))
        if runnable_by is not None:
            query = query.where(runnable(runnable_by))
        if not sub_plans:
            query = query.where(execution_plans.c.caller_execution_plan_id.is_(None))
        with self.db.read() as connection:
            return list(connection.execute(query).scalars())

    def plan_id_with_key(self, key: str) -> str | None:
        """The id of the plan with idempotency ``key``, if any (one indexed lookup)."""
        with self.db.read() as connection:
            found = connection.execute(_BY_KEY, {"key": key}).scalar_one_or_none()
        return None if found is None else str(found)

    def maintain(self) -> list[str]:
        """Nothing here: SQLite and InnoDB keep their tables up by themselves."""
        return []

    def delete_old_plans(
        self,
        before: datetime,
        results: Sequence[PlanResult] | None = None,
        *,
        after: str | None = None,
        limit: int = 500,
        dry_run: bool = False,
    ) -> tuple[int, str | None]:
        """One batch of :mod:`retention`: up to ``limit`` top-level plans stopped before
        ``before`` (ids above ``after``), deleted with their sub-plans in one
        transaction. (how many plans went, or would go; the last id looked at, None
        when there are no more)."""
        query = retention.old_plans(before, results).where(execution_plans.c.id > (after or ""))
        with self.db.write() as connection:
            ordered = query.order_by(execution_plans.c.id).limit(limit)
            roots: list[str] = list(connection.execute(ordered).scalars())
            if not roots:
                return 0, None
            plan_ids, _ = retention.families(connection, roots)
            if not dry_run:
                retention.delete(connection, plan_ids)
        return len(plan_ids), roots[-1]


def change_operations(changes: Changes) -> list[Operation]:
    """The writes of a batch of changes; every one fenced by its plan."""
    key = ("execution_plan_id", "id")
    return [
        Update(
            steps,
            key,
            [
                {"execution_plan_id": plan_id, "id": step_id}
                | {name: values[name] for name in STEP_MUTABLE}
                for (plan_id, step_id), values in changes.steps.items()
            ],
            fence="execution_plan_id",
        ),
        Update(
            actions,
            key,
            [
                {"execution_plan_id": plan_id, "id": action_id, "output": output}
                for (plan_id, action_id), output in changes.outputs.items()
            ],
            fence="execution_plan_id",
        ),
        Update(
            actions,
            key,
            [
                {"execution_plan_id": plan_id, "id": action_id, "input": value}
                for (plan_id, action_id), value in changes.inputs.items()
            ],
            fence="execution_plan_id",
        ),
        Update(
            execution_plans,
            ("id",),
            [
                {"id": plan_id} | {name: values[name] for name in PLAN_MUTABLE}
                for plan_id, values in changes.plans.items()
            ],
            fence="id",
        ),
        Insert(
            execution_history,
            [
                {"execution_plan_id": p, "time": t, "name": n, "world_id": w}
                for p, t, n, w in changes.history
            ],
            fence="execution_plan_id",
        ),
        Delete(
            coordinator_records,
            [
                {"class": lock_class, "id": lock_id, "owner_id": owner_id}
                for lock_class, lock_id, owner_id in changes.released_locks
            ],
        ),
    ]
