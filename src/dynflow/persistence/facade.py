"""The persistence facade: domain operations over the SQLAlchemy Core tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.action import registry
from dynflow.errors import ConfigurationError, NotFound, UnknownActionClass
from dynflow.execution_plan.model import (
    ActionRecord,
    ExecutionPlan,
    HistoryEntry,
    PlanDetails,
    Step,
    StepError,
)
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.flows import from_json
from dynflow.persistence import bulk, documents, migrate
from dynflow.persistence.changes import Changes
from dynflow.persistence.database import Database, locks_taken
from dynflow.persistence.delayed import DelayedPlanStore
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    envelopes,
    execution_history,
    execution_plans,
    steps,
)

PLAN_FILTERS = {
    "state": execution_plans.c.state,
    "result": execution_plans.c.result,
    "label": execution_plans.c.label,
    "id": execution_plans.c.id,
    "caller_execution_plan_id": execution_plans.c.caller_execution_plan_id,
    "caller_action_id": execution_plans.c.caller_action_id,
}
PLAN_ORDER = {
    "started_at": execution_plans.c.started_at,
    "ended_at": execution_plans.c.ended_at,
    "state": execution_plans.c.state,
    "result": execution_plans.c.result,
    "label": execution_plans.c.label,
    "id": execution_plans.c.id,
}
STEP_MUTABLE = (
    "state",
    "error",
    "started_at",
    "ended_at",
    "execution_time",
    "real_time",
    "progress_done",
)
PLAN_MUTABLE = ("state", "result", "started_at", "ended_at", "execution_time", "real_time")


class Persistence:
    """Durable state of execution plans; one instance per world."""

    def __init__(self, database_url: str) -> None:
        self.db = Database(database_url)
        #: delayed plans: scheduled plans and when to plan them
        self.delayed = DelayedPlanStore(self.db)

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
        plan: Mapping[str, Any],
        action_rows: Sequence[Mapping[str, Any]],
        step_rows: Sequence[Mapping[str, Any]],
        locks: Sequence[Mapping[str, Any]] = (),
        envelope: tuple[str, str] | None = None,
    ) -> bool:
        """Insert a freshly planned plan, with the coordinator locks it takes, at once;
        and ``envelope`` (receiver id, text) if its receiver is a registered world
        (True when written; PostgreSQL wakes the receiver up).

        Raises :class:`LockTaken` (and writes nothing) when a lock is held.
        """
        with locks_taken(locks):
            return self._save_new_plan(plan, action_rows, step_rows, locks, envelope)

    def _save_new_plan(
        self,
        plan: Mapping[str, Any],
        action_rows: Sequence[Mapping[str, Any]],
        step_rows: Sequence[Mapping[str, Any]],
        locks: Sequence[Mapping[str, Any]],
        envelope: tuple[str, str] | None,
    ) -> bool:
        operations: list[bulk.Operation] = [
            bulk.Insert(execution_plans, [plan]),
            bulk.Insert(actions, action_rows),
            bulk.Insert(steps, step_rows),
            bulk.Insert(coordinator_records, locks),
        ]
        if envelope is not None and self.db.dialect.single_statement_writes:
            with self.db.write_statement() as connection:
                return bulk.write_and_send(connection, operations, *envelope)
        with self.db.write_statement() as connection:
            bulk.write(connection, operations)
            if envelope is None:
                return False
            receiver_id, data = envelope
            registered = sa.select(coordinator_records.c.id, sa.literal(data, sa.Text)).where(
                coordinator_records.c["class"] == "world", coordinator_records.c.id == receiver_id
            )
            insert = sa.insert(envelopes).from_select(["receiver_id", "data"], registered)
            return bool(connection.execute(insert).rowcount)

    def apply(self, changes: Changes, connection: sa.Connection | None = None) -> None:
        """Write a batch of changes in one transaction."""
        if connection is None:
            with self.db.write_statement() as own:
                bulk.write(own, _operations(changes))
        else:
            bulk.write(connection, _operations(changes))

    def apply_fenced(self, changes: Changes, owner: str) -> set[str]:
        """Write the changes of the plans whose execution lock ``owner`` still holds, in
        one transaction; returns the plans fenced off (nothing of theirs is written)."""
        plan_ids = changes.plan_ids()
        if not plan_ids:
            self.apply(changes)
            return set()
        if self.db.dialect.single_statement_writes:
            fence = bulk.Fence(owner, frozenset(plan_ids))
            held = bulk.write_fenced(self.db, _operations(changes), fence)
            return plan_ids - held
        with self.db.write() as connection:
            query = (
                sa.select(coordinator_records.c.id)
                .where(
                    coordinator_records.c["class"] == "execution_lock",
                    coordinator_records.c.owner_id == owner,
                    coordinator_records.c.id.in_(sorted(plan_ids)),
                )
                .with_for_update(read=True)  # nobody takes them until this commits
            )
            fenced = plan_ids - set(connection.execute(query).scalars())
            for plan_id in fenced:
                changes.drop_plan(plan_id)
            bulk.write(connection, _operations(changes))
        return fenced

    # -- reading ------------------------------------------------------------

    def load_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """The plan with its steps, actions and history; raises :class:`NotFound`."""
        if self.db.name == "postgresql":  # one statement instead of four
            document = documents.load(self.db, [execution_plan_id]).get(execution_plan_id)
            if document is None:
                raise NotFound(f"execution plan {execution_plan_id} not found")
            return plan_from_document(document)
        with self.db.read() as connection:
            row = connection.execute(
                sa.select(execution_plans).where(execution_plans.c.id == execution_plan_id)
            ).one_or_none()
            if row is None:
                raise NotFound(f"execution plan {execution_plan_id} not found")
            plan = _plan_from_row(row._mapping)
            plan._details = self._details(connection, execution_plan_id)
        return plan

    def take_over_plan(
        self,
        plan_id: str,
        from_owner: str,
        owner: str,
        lock_data: Mapping[str, Any],
        reply: tuple[str, str] | None = None,
    ) -> tuple[bool, ExecutionPlan | None, bool]:
        """Move the plan's execution lock from ``from_owner`` to ``owner``: (moved?, the
        plan when it was read in the same statement, replied?). On PostgreSQL the plan
        is read, and ``reply`` (receiver id, envelope text) written, with the move."""
        if self.db.name == "postgresql":
            moved, document = documents.take_over_and_load(
                self.db, plan_id, from_owner, owner, dict(lock_data), reply
            )
            plan = None if document is None else plan_from_document(document)
            return moved, plan, moved and reply is not None
        records = coordinator_records
        with self.db.write() as connection:
            result = connection.execute(
                sa.update(records)
                .where(
                    records.c["class"] == "execution_lock",
                    records.c.id == plan_id,
                    records.c.owner_id == from_owner,
                )
                .values(owner_id=owner, data=dict(lock_data))
            )
        return bool(result.rowcount), None, False

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
            steps={r.id: _step_from_row(r._mapping) for r in step_rows},
            actions=[_action_from_row(r._mapping) for r in action_rows],
            history=[HistoryEntry(r.time, r.name, r.world_id) for r in history_rows],
        )

    def _lazy_details(self, plan_id: str) -> PlanDetails:
        with self.db.read() as connection:
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
        if order_by not in PLAN_ORDER:
            raise ConfigurationError(
                f"cannot order plans by {order_by!r}: use one of {', '.join(PLAN_ORDER)}"
            )
        column = PLAN_ORDER[order_by]
        query = sa.select(execution_plans).where(*_conditions(filters))
        query = query.order_by(*_ordering(column, desc, self.db.name), execution_plans.c.id)
        if per_page is not None:
            if per_page <= 0 or (page is not None and page < 0):
                raise ConfigurationError("page must be >= 0 and per_page > 0")
            query = query.limit(per_page).offset((page or 0) * per_page)
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        plans = []
        for row in rows:
            plan = _plan_from_row(row._mapping)
            plan._details = lambda plan_id=plan.id: self._lazy_details(plan_id)
            plans.append(plan)
        return plans

    def find_execution_plan(self, execution_plan_id: str) -> ExecutionPlan:
        """The plan's row now, its steps, actions and history on first access (one query
        instead of four; on PostgreSQL one query loads it whole); raises :class:`NotFound`."""
        if self.db.name == "postgresql":
            return self.load_execution_plan(execution_plan_id)
        found = self.find_execution_plans(filters={"id": execution_plan_id})
        if not found:
            raise NotFound(f"execution plan {execution_plan_id} not found")
        return found[0]

    def find_execution_plan_counts_by_state(
        self, filters: Mapping[str, Any] | None = None
    ) -> dict[PlanState, int]:
        """How many plans matching ``filters`` are in each state (one query)."""
        query = (
            sa.select(execution_plans.c.state, sa.func.count())
            .where(*_conditions(filters))
            .group_by(execution_plans.c.state)
        )
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        counts = dict.fromkeys(PlanState, 0)
        counts.update({PlanState(state): int(n) for state, n in rows})
        return counts

    def find_execution_plan_counts(self, filters: Mapping[str, Any] | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(execution_plans).where(*_conditions(filters))
        with self.db.read() as connection:
            return int(connection.execute(query).scalar_one())

    def count_sub_plans(
        self, execution_plan_id: str, action_id: int
    ) -> dict[tuple[PlanState, PlanResult], int]:
        """How many sub-plans of that action are in each (state, result)."""
        query = (
            sa.select(execution_plans.c.state, execution_plans.c.result, sa.func.count())
            .where(
                execution_plans.c.caller_execution_plan_id == execution_plan_id,
                execution_plans.c.caller_action_id == action_id,
            )
            .group_by(execution_plans.c.state, execution_plans.c.result)
        )
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        return {(PlanState(state), PlanResult(result)): int(n) for state, result, n in rows}

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
    ) -> list[str]:
        """Ids of plans in ``states`` (and ``result``); ``sub_plans=False`` leaves out
        plans with a caller."""
        query = sa.select(execution_plans.c.id).where(
            execution_plans.c.state.in_([str(s) for s in states])
        )
        if result is not None:
            query = query.where(execution_plans.c.result == str(result))
        if not sub_plans:
            query = query.where(execution_plans.c.caller_execution_plan_id.is_(None))
        with self.db.read() as connection:
            return list(connection.execute(query).scalars())


def _operations(changes: Changes) -> list[bulk.Operation]:
    key = ("execution_plan_id", "id")
    return [
        bulk.Update(
            steps,
            key,
            [
                {"execution_plan_id": plan_id, "id": step_id}
                | {name: values[name] for name in STEP_MUTABLE}
                for (plan_id, step_id), values in changes.steps.items()
            ],
            fence="execution_plan_id",
        ),
        bulk.Update(
            actions,
            key,
            [
                {"execution_plan_id": plan_id, "id": action_id, "output": output}
                for (plan_id, action_id), output in changes.outputs.items()
            ],
            fence="execution_plan_id",
        ),
        bulk.Update(
            execution_plans,
            ("id",),
            [
                {"id": plan_id} | {name: values[name] for name in PLAN_MUTABLE}
                for plan_id, values in changes.plans.items()
            ],
            fence="id",
        ),
        bulk.Insert(
            execution_history,
            [
                {"execution_plan_id": p, "time": t, "name": n, "world_id": w}
                for p, t, n, w in changes.history
            ],
            fence="execution_plan_id",
        ),
        bulk.Delete(
            coordinator_records,
            [
                {"class": lock_class, "id": lock_id, "owner_id": owner_id}
                for lock_class, lock_id, owner_id in changes.released_locks
            ],
        ),
    ]


def plan_from_rows(
    plan: Mapping[str, Any],
    action_rows: Sequence[Mapping[str, Any]],
    step_rows: Sequence[Mapping[str, Any]],
) -> ExecutionPlan:
    """The read model of a plan from the rows about to be (or just) written."""
    result = _plan_from_row(plan)
    result._details = PlanDetails(
        steps={
            r["id"]: _step_from_row(
                {**r, "error": r["error"] if r["error"] is None else dict(r["error"])}
            )
            for r in step_rows
        },
        actions=[_action_from_row(r) for r in action_rows],
        history=[],
    )
    return result


def _ordering(column: sa.Column[Any], desc: bool, dialect: str) -> list[sa.ColumnElement[Any]]:
    """Order by ``column``, a NULL time (not started, not ended yet) counting as later than
    any other, so that every database returns the same order."""
    direction = column.desc() if desc else column.asc()
    if not column.nullable:
        return [direction]
    if dialect == "mysql":  # no NULLS FIRST/LAST there, and NULL sorts first
        missing = column.is_(None)
        return [missing.desc() if desc else missing.asc(), direction]
    return [direction.nulls_first() if desc else direction.nulls_last()]


def _special_condition(name: str, value: Any) -> sa.ColumnElement[bool] | None:
    """Filters beyond equality: entry action class, label text, start time range."""
    if name == "action_class":
        entries = sa.select(actions.c.execution_plan_id).where(
            actions.c.id == 1, actions.c.action_class == str(value)
        )
        return execution_plans.c.id.in_(entries)
    if name == "label_contains":
        text = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return execution_plans.c.label.ilike(f"%{text}%", escape="\\")
    if name in ("started_after", "started_before"):
        when = value if isinstance(value, datetime) else _parse_time(name, value)
        column = execution_plans.c.started_at
        return column >= when if name == "started_after" else column <= when
    return None


def _parse_time(name: str, value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"filter {name!r} needs an ISO date-time, got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


SPECIAL_FILTERS = ("action_class", "label_contains", "started_after", "started_before")


def _conditions(filters: Mapping[str, Any] | None) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    for name, value in (filters or {}).items():
        special = _special_condition(name, value)
        if special is not None:
            conditions.append(special)
            continue
        if name not in PLAN_FILTERS:
            known = ", ".join([*PLAN_FILTERS, *SPECIAL_FILTERS])
            raise ConfigurationError(f"cannot filter plans by {name!r}: use one of {known}")
        column = PLAN_FILTERS[name]
        if isinstance(value, list | tuple | set | frozenset):
            conditions.append(column.in_([_filter_value(column, v) for v in value]))
        elif value is None:
            conditions.append(column.is_(None))
        else:
            conditions.append(column == _filter_value(column, value))
    return conditions


def _filter_value(column: sa.ColumnElement[Any], value: Any) -> Any:
    if isinstance(column.type, sa.Integer):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"filter {column.name!r} needs an integer, got {value!r}"
            ) from None
    return str(value)


def plan_from_document(document: documents.PlanDocument) -> ExecutionPlan:
    """The read model of a plan from its document (see ``documents``)."""
    plan = _plan_from_row(document.plan)
    plan._details = PlanDetails(
        steps={r["id"]: _step_from_row(r) for r in document.steps},
        actions=[_action_from_row(r) for r in document.actions],
        history=[HistoryEntry(r["time"], r["name"], r["world_id"]) for r in document.history],
    )
    return plan


def _plan_from_row(row: Mapping[Any, Any]) -> ExecutionPlan:
    data = row["data"] or {}
    return ExecutionPlan(
        id=row["id"],
        label=row["label"],
        state=PlanState(row["state"]),
        result=PlanResult(row["result"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        execution_time=row["execution_time"],
        real_time=row["real_time"],
        caller_execution_plan_id=row["caller_execution_plan_id"],
        caller_action_id=row["caller_action_id"],
        run_flow=from_json(data["run_flow"]) if data.get("run_flow") is not None else None,
        finalize_flow=tuple(data.get("finalize_flow", ())),
    )


def _step_from_row(row: Mapping[Any, Any]) -> Step:
    return Step(
        id=row["id"],
        action_id=row["action_id"],
        action_class=row["action_class"],
        phase=Phase(row["phase"]),
        state=StepState(row["state"]),
        queue=row["queue"],
        error=StepError.from_json(row["error"]) if row["error"] else None,
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        execution_time=row["execution_time"],
        real_time=row["real_time"],
        progress_done=row["progress_done"],
        progress_weight=row["progress_weight"],
    )


def _action_from_row(row: Mapping[Any, Any]) -> ActionRecord:
    missing = None
    try:
        registry.lookup(row["action_class"])
    except UnknownActionClass as exc:
        missing = str(exc)
    return ActionRecord(
        id=row["id"],
        action_class=row["action_class"],
        label=row["label"],
        input=row["input"],
        output=row["output"],
        plan_step_id=row["plan_step_id"],
        run_step_id=row["run_step_id"],
        finalize_step_id=row["finalize_step_id"],
        parent_action_id=row["parent_action_id"],
        missing=missing,
    )
