"""The delayed-plan store over the shared database (see ``persistence.delayed``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dynflow.errors import ConfigurationError, NotFound
from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.persistence.delayed import CLAIMABLE, ENTRY_ID, Claim, DelayedPlan
from dynflow.persistence.sql.bulk import BulkWriter, Delete, Insert, Operation, Update
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sql.locks import lock_taken, taken
from dynflow.persistence.sql.mapping import ATTRIBUTE_COLUMNS, plan_rows
from dynflow.persistence.sql.queries import runnable
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    delayed_plans,
    execution_plans,
    plan_dependencies,
    steps,
)
from dynflow.serialization import dumps

_DEPS = plan_dependencies.c


#: the scheduled plans waiting for any of the plans ``ids`` (built once: it runs for
#: every plan that stops)
_DEPENDENTS = (
    sa.select(_DEPS.execution_plan_id)
    .where(_DEPS.after_plan_id.in_(sa.bindparam("ids", expanding=True)))
    .where(_DEPS.execution_plan_id.in_(sa.select(delayed_plans.c.execution_plan_id)))
)

_PG_DEPENDENTS = sa.text(
    f"SELECT d.execution_plan_id FROM {plan_dependencies.name} AS d "
    "WHERE d.after_plan_id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json)))) "
    f"AND d.execution_plan_id IN (SELECT execution_plan_id FROM {delayed_plans.name})"
)


class _NotClaimable(Exception):
    """Rolls the claim's transaction back."""


class SqlDelayedPlanStore:
    def __init__(self, db: Database, bulk: BulkWriter) -> None:
        self.db = db
        self.bulk = bulk

    # -- writing ------------------------------------------------------------

    def save_scheduled(
        self, plan: ExecutionPlan, delayed: Mapping[str, Any], after: Sequence[str] = ()
    ) -> None:
        row, action_rows, step_rows = plan_rows(plan)
        edges = [{"execution_plan_id": plan.id, "after_plan_id": a} for a in after]
        try:
            with self.db.write_statement() as connection:
                self.bulk.write(
                    connection,
                    [
                        Insert(execution_plans, [row]),
                        Insert(actions, action_rows),
                        Insert(steps, step_rows),
                        Insert(delayed_plans, [delayed]),
                        Insert(plan_dependencies, edges),
                    ],
                )
        except sa.exc.IntegrityError:
            raise taken(self.db, plan, ()) from None

    def claim(self, plan_id: str, lock: Mapping[str, Any], *, planning: bool) -> Claim:
        try:
            with self.db.write() as connection:
                connection.execute(sa.insert(coordinator_records), [dict(lock)])
                state = connection.execute(
                    sa.select(execution_plans.c.state).where(execution_plans.c.id == plan_id)
                ).scalar_one_or_none()
                if state not in CLAIMABLE:
                    raise _NotClaimable
                if planning and state != PlanState.PLANNING:
                    connection.execute(
                        sa.update(execution_plans)
                        .where(execution_plans.c.id == plan_id)
                        .values(state=str(PlanState.PLANNING))
                    )
        except sa.exc.IntegrityError:
            return Claim.LOCKED
        except _NotClaimable:
            return Claim.GONE
        return Claim.CLAIMED

    def save_processed(
        self,
        plan: ExecutionPlan,
        *,
        locks: Sequence[Mapping[str, Any]] = (),
        release: Mapping[str, Any] | None = None,
    ) -> None:
        row, action_rows, step_rows = plan_rows(plan)
        for name in ATTRIBUTE_COLUMNS:  # stored with the scheduled plan
            del row[name]
        key = ("execution_plan_id", "id")
        entry_actions = [r for r in action_rows if r["id"] == ENTRY_ID]
        entry_steps = [r for r in step_rows if r["id"] == ENTRY_ID]
        operations: list[Operation] = [
            Update(execution_plans, ("id",), [row]),
            Update(actions, key, entry_actions),
            Insert(actions, [r for r in action_rows if r["id"] != ENTRY_ID]),
            Update(steps, key, entry_steps),
            Insert(steps, [r for r in step_rows if r["id"] != ENTRY_ID]),
            Insert(coordinator_records, locks),
        ]
        try:
            self._write(plan.id, operations, release)
        except sa.exc.IntegrityError:
            raise lock_taken(self.db, locks) from None

    def stop(
        self,
        plan_id: str,
        *,
        result: PlanResult,
        step_state: StepState,
        error: Mapping[str, Any] | None,
        ended_at: datetime,
        release: Mapping[str, Any] | None = None,
    ) -> None:
        plan = {
            "id": plan_id,
            "state": str(PlanState.STOPPED),
            "result": str(result),
            "ended_at": ended_at,
        }
        step = {
            "execution_plan_id": plan_id,
            "id": ENTRY_ID,
            "state": str(step_state),
            "error": error,
            "ended_at": ended_at,
        }
        self._write(
            plan_id,
            [
                Update(execution_plans, ("id",), [plan]),
                Update(steps, ("execution_plan_id", "id"), [step]),
            ],
            release,
        )

    def delete(self, plan_id: str) -> None:
        """Forget a delayed row (e.g. one left over by a plan that moved on)."""
        with self.db.write() as connection:
            connection.execute(
                sa.delete(delayed_plans).where(delayed_plans.c.execution_plan_id == plan_id)
            )

    def _write(
        self, plan_id: str, operations: list[Operation], release: Mapping[str, Any] | None
    ) -> None:
        operations.append(Delete(delayed_plans, [{"execution_plan_id": plan_id}]))
        if release is not None:
            operations.append(Delete(coordinator_records, [release]))
        with self.db.write_statement() as connection:
            self.bulk.write(connection, operations)

    # -- reading ------------------------------------------------------------

    def load(self, plan_id: str) -> DelayedPlan:
        with self.db.read() as connection:
            row = connection.execute(
                _select().where(delayed_plans.c.execution_plan_id == plan_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"execution plan {plan_id} is not a delayed plan waiting to start")
        return _delayed(row._mapping)

    def find_due(
        self, now: datetime, limit: int, runnable_by: str | None = None
    ) -> list[DelayedPlan]:
        """Up to ``limit`` delayed plans whose ``start_at`` is not after ``now`` and whose
        prerequisites stopped, the highest priority first, then the oldest (``runnable_by``:
        of that code version or of none)."""
        prerequisite = execution_plans.alias("prerequisite")
        waiting = (
            sa.select(_DEPS.execution_plan_id)
            .join(prerequisite, prerequisite.c.id == _DEPS.after_plan_id)
            .where(
                _DEPS.execution_plan_id == delayed_plans.c.execution_plan_id,
                prerequisite.c.state != str(PlanState.STOPPED),
            )
        )
        query = (
            _select()
            .where(delayed_plans.c.start_at <= now, ~waiting.exists())
            .where(*([] if runnable_by is None else [runnable(runnable_by)]))
            .order_by(
                execution_plans.c.priority.desc(),
                delayed_plans.c.start_at,
                delayed_plans.c.execution_plan_id,
            )
            .limit(limit)
        )
        with self.db.read() as connection:
            return [_delayed(row._mapping) for row in connection.execute(query)]

    def find(self, page: int | None = None, per_page: int | None = None) -> list[DelayedPlan]:
        """Every delayed plan (or one page of them), the soonest first."""
        query = _select().order_by(delayed_plans.c.start_at, delayed_plans.c.execution_plan_id)
        if per_page is not None:
            if per_page <= 0 or (page is not None and page < 0):
                raise ConfigurationError("page must be >= 0 and per_page > 0")
            query = query.limit(per_page).offset((page or 0) * per_page)
        with self.db.read() as connection:
            return [_delayed(row._mapping) for row in connection.execute(query)]

    def prerequisites(self, plan_id: str) -> list[tuple[str, PlanState | None, str | None]]:
        query = (
            sa.select(_DEPS.after_plan_id, execution_plans.c.state, execution_plans.c.result)
            .outerjoin(execution_plans, execution_plans.c.id == _DEPS.after_plan_id)
            .where(_DEPS.execution_plan_id == plan_id)
            .order_by(_DEPS.after_plan_id)
        )
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        return [(a, None if s is None else PlanState(s), result) for a, s, result in rows]

    def dependents(self, plan_id: str) -> list[str]:
        return self.dependents_of([plan_id])

    def dependents_of(self, plan_ids: Sequence[str]) -> list[str]:
        if not plan_ids:
            return []
        if self.db.name == "postgresql":  # straight on the driver: it runs for every stop
            found = [r[0] for r in self.db.run(_PG_DEPENDENTS, {"ids": dumps(sorted(plan_ids))})]
        else:
            with self.db.read() as connection:
                ids = {"ids": sorted(set(plan_ids))}
                found = list(connection.execute(_DEPENDENTS, ids).scalars())
        return list(dict.fromkeys(found))

    def ancestors(self, plan_ids: Sequence[str]) -> set[str]:
        found = set(plan_ids)
        frontier = sorted(found)
        with self.db.read() as connection:
            while frontier:
                query = sa.select(_DEPS.after_plan_id).where(_DEPS.execution_plan_id.in_(frontier))
                frontier = sorted(set(connection.execute(query).scalars()) - found)
                found.update(frontier)
        return found

    def count(self) -> int:
        with self.db.read() as connection:
            query = sa.select(sa.func.count()).select_from(delayed_plans)
            return int(connection.execute(query).scalar_one())


def _select() -> sa.Select[Any]:
    attributes = [execution_plans.c[name] for name in ATTRIBUTE_COLUMNS]
    return sa.select(delayed_plans, execution_plans.c.label, *attributes).join(
        execution_plans, execution_plans.c.id == delayed_plans.c.execution_plan_id
    )


def _delayed(row: Mapping[Any, Any]) -> DelayedPlan:
    payload = row["args"] or {}
    return DelayedPlan(
        execution_plan_id=row["execution_plan_id"],
        label=row["label"],
        start_at=row["start_at"],
        start_before=row["start_before"],
        action_class=payload.get("action_class", ""),
        args=list(payload.get("args", [])),
        kwargs=dict(payload.get("kwargs", {})),
        attributes=PlanAttributes(
            key=row["key"],
            code_version=row["code_version"],
            priority=row["priority"] or 0,
            deadline_at=row["deadline_at"],
            labels=dict(row["labels"] or {}),
        ),
    )
