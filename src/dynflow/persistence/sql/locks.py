"""Lock rows taken with other writes: which one was held when the write failed; locks
moved from one owner to another."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from dynflow.errors import KeyTaken, LockTaken, PersistenceError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence.records import EXECUTION_LOCK
from dynflow.persistence.sql.database import Database, safe_url
from dynflow.persistence.tables import coordinator_records as records
from dynflow.persistence.tables import execution_plans


def taken(db: Database, plan: ExecutionPlan, locks: Sequence[Mapping[str, Any]]) -> Exception:
    """The error for a new plan whose insert broke a unique key: :class:`KeyTaken` when
    another plan has its key, else the :class:`LockTaken` of :func:`lock_taken`."""
    if plan.key is not None:
        query = sa.select(execution_plans.c.id).where(execution_plans.c.key == plan.key)
        with db.read() as connection:
            holder = connection.execute(query).scalar_one_or_none()
        if holder is not None and holder != plan.id:
            return KeyTaken(plan.key, holder)
    return lock_taken(db, locks)


def lock_taken(db: Database, locks: Sequence[Mapping[str, Any]]) -> Exception:
    """The error for a write that broke a unique key while taking ``locks``: the
    :class:`LockTaken` of the first one held by someone (by whom, if still held)."""
    if not locks:
        return PersistenceError(f"database {safe_url(db.url)}: a write broke a unique key")
    query = sa.select(records.c["class"], records.c.id, records.c.owner_id).where(
        sa.or_(
            *(
                sa.and_(records.c["class"] == lock["class"], records.c.id == lock["id"])
                for lock in locks
            )
        )
    )
    with db.read() as connection:
        held = {(r[0], r[1]): r[2] for r in connection.execute(query)}
    for lock in locks:
        key = (lock["class"], lock["id"])
        if key in held:
            return LockTaken(key[0], key[1], held[key])
    return LockTaken(locks[0]["class"], locks[0]["id"], None)  # released since


def move_execution_lock(
    connection: sa.Connection, plan_id: str, from_owner: str, owner: str, data: Mapping[str, Any]
) -> bool:
    """Give the plan's execution lock held by ``from_owner`` to ``owner`` (with ``data``):
    moved?"""
    result = connection.execute(
        sa.update(records)
        .where(
            records.c["class"] == EXECUTION_LOCK,
            records.c.id == plan_id,
            records.c.owner_id == from_owner,
        )
        .values(owner_id=owner, data=dict(data))
    )
    return bool(result.rowcount)


#: what MySQL/MariaDB (error number) and PostgreSQL (SQLSTATE) say of a transaction
#: they rolled back to break a deadlock
_DEADLOCK_ERRNO = 1213
_DEADLOCK_SQLSTATE = "40P01"


def deadlocked(error: BaseException) -> bool:
    """True when ``error`` (or what caused it) is the database ending this transaction
    to break a deadlock: the transaction was undone, and may simply be tried again."""
    seen: BaseException | None = error
    while seen is not None:
        cause = getattr(seen, "orig", None) or seen
        if getattr(cause, "sqlstate", None) == _DEADLOCK_SQLSTATE:
            return True
        args = getattr(cause, "args", ())
        if args and args[0] == _DEADLOCK_ERRNO:
            return True
        seen = seen.__cause__
    return False
