"""Persistence of delayed plans: what to plan (action class and arguments) and when.

A delayed plan is an execution plan row in state ``scheduled`` (with its entry
action and that action's ``pending`` plan step) plus a row of
``dynflow_delayed_plans``. Both are written in one transaction, and the delayed
row goes away in the same transaction that moves the plan on (planned, or
stopped), so a delayed row exists exactly while the plan waits to be planned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from dynflow.errors import ConfigurationError, NotFound
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.persistence import bulk
from dynflow.persistence.database import Database, locks_taken
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    delayed_plans,
    execution_plans,
    steps,
)

#: the entry action and its plan step, written when the plan is scheduled
ENTRY_ID = 1
#: plan states in which a delayed plan may be taken up (``planning``: by a world that
#: died while planning it; its lock is gone once the world is invalidated)
CLAIMABLE = (str(PlanState.SCHEDULED), str(PlanState.PLANNING))


@dataclass(frozen=True)
class DelayedPlan:
    """A plan waiting for its time: when, until when, and what to plan then."""

    execution_plan_id: str
    label: str
    start_at: datetime
    start_before: datetime | None
    action_class: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


class Claim(StrEnum):
    """What :meth:`DelayedPlanStore.claim` found."""

    #: the lock is ours now (and the plan ``planning`` if asked)
    CLAIMED = "claimed"
    #: another world holds the plan's execution lock
    LOCKED = "locked"
    #: the plan is not waiting any more (planned, stopped) or does not exist
    GONE = "gone"


class _NotClaimable(Exception):
    """Rolls the claim's transaction back."""


class DelayedPlanStore:
    """The delayed-plan aggregate over the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing ------------------------------------------------------------

    def save_scheduled(
        self,
        plan: Mapping[str, Any],
        action_rows: Sequence[Mapping[str, Any]],
        step_rows: Sequence[Mapping[str, Any]],
        delayed: Mapping[str, Any],
    ) -> None:
        """Insert a ``scheduled`` plan (entry action, plan step) and its delayed row at once."""
        with self.db.write_statement() as connection:
            bulk.write(
                connection,
                [
                    bulk.Insert(execution_plans, [plan]),
                    bulk.Insert(actions, action_rows),
                    bulk.Insert(steps, step_rows),
                    bulk.Insert(delayed_plans, [delayed]),
                ],
            )

    def claim(self, plan_id: str, lock: Mapping[str, Any], *, planning: bool) -> Claim:
        """Take the plan's execution ``lock`` (a coordinator row) if the plan still waits.

        With ``planning``, the plan also becomes ``planning``, in the same transaction.
        """
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
        plan: Mapping[str, Any],
        action_rows: Sequence[Mapping[str, Any]],
        step_rows: Sequence[Mapping[str, Any]],
        *,
        locks: Sequence[Mapping[str, Any]] = (),
        release: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the plan as planning left it (planned, or stopped on a failure) over its
        scheduled rows, and delete its delayed row; ``release`` (class, id, owner_id of
        a lock) is deleted too, and ``locks`` (coordinator rows) are taken.

        Raises :class:`LockTaken` (and writes nothing) when a lock is held.
        """
        key = ("execution_plan_id", "id")
        entry_actions = [r for r in action_rows if r["id"] == ENTRY_ID]
        entry_steps = [r for r in step_rows if r["id"] == ENTRY_ID]
        with locks_taken(locks):
            self._write(
                plan["id"],
                [
                    bulk.Update(execution_plans, ("id",), [plan]),
                    bulk.Update(actions, key, entry_actions),
                    bulk.Insert(actions, [r for r in action_rows if r["id"] != ENTRY_ID]),
                    bulk.Update(steps, key, entry_steps),
                    bulk.Insert(steps, [r for r in step_rows if r["id"] != ENTRY_ID]),
                    bulk.Insert(coordinator_records, locks),
                ],
                release,
            )

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
        """Stop a plan that was never planned: ``stopped``/``result``, its entry plan step
        ``step_state`` with ``error``; its delayed row (and ``release``) deleted."""
        self._write(
            plan_id,
            [
                bulk.Update(
                    execution_plans,
                    ("id",),
                    [
                        {
                            "id": plan_id,
                            "state": str(PlanState.STOPPED),
                            "result": str(result),
                            "ended_at": ended_at,
                        }
                    ],
                ),
                bulk.Update(
                    steps,
                    ("execution_plan_id", "id"),
                    [
                        {
                            "execution_plan_id": plan_id,
                            "id": ENTRY_ID,
                            "state": str(step_state),
                            "error": error,
                            "ended_at": ended_at,
                        }
                    ],
                ),
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
        self, plan_id: str, operations: list[bulk.Operation], release: Mapping[str, Any] | None
    ) -> None:
        operations.append(bulk.Delete(delayed_plans, [{"execution_plan_id": plan_id}]))
        if release is not None:
            operations.append(bulk.Delete(coordinator_records, [release]))
        with self.db.write_statement() as connection:
            bulk.write(connection, operations)

    # -- reading ------------------------------------------------------------

    def load(self, plan_id: str) -> DelayedPlan:
        """The delayed plan of ``plan_id``; raises :class:`NotFound` once it was processed."""
        with self.db.read() as connection:
            row = connection.execute(
                _select().where(delayed_plans.c.execution_plan_id == plan_id)
            ).one_or_none()
        if row is None:
            raise NotFound(f"execution plan {plan_id} is not a delayed plan waiting to start")
        return _delayed(row._mapping)

    def find_due(self, now: datetime, limit: int) -> list[DelayedPlan]:
        """Up to ``limit`` delayed plans whose ``start_at`` is not after ``now``, oldest first."""
        query = (
            _select()
            .where(delayed_plans.c.start_at <= now)
            .order_by(delayed_plans.c.start_at, delayed_plans.c.execution_plan_id)
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

    def count(self) -> int:
        with self.db.read() as connection:
            query = sa.select(sa.func.count()).select_from(delayed_plans)
            return int(connection.execute(query).scalar_one())


def _select() -> sa.Select[Any]:
    return sa.select(delayed_plans, execution_plans.c.label).join(
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
    )
