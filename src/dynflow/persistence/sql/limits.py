"""The limit store over the shared database (see :mod:`dynflow.persistence.limits`).

Every exchange is one transaction: it reads which keys it will count (the keys it
releases, asks for or retries, and every key of the steps waiting on those), locks
their ``dynflow_limits`` rows in sorted order (so two worlds never wait on each
other), then releases, queues and grants. Only the world that owns a waiting step
grants it (its rows are fenced by its registration); when another world's step is
first in line and may start, the caller is told to wake that world.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.limits import (
    HOLDING,
    SPENT,
    WAITING,
    LimitEntry,
    LimitKey,
    LimitOutcome,
    LimitRequest,
)
from dynflow.persistence.records import WORLD
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import coordinator_records, limit_slots, limits

#: attempts of an exchange that met a key row inserted by another world meanwhile
_ATTEMPTS = 3

Slot = tuple[str, int]  # (plan, step)


class SqlLimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the exchange ---------------------------------------------------------

    def exchange(
        self,
        world_id: str,
        registration: str,
        now: datetime,
        *,
        acquire: Sequence[LimitRequest] = (),
        release: Collection[Slot] = (),
        drop_plans: Collection[str] = (),
        retry: Collection[str] = (),
    ) -> LimitOutcome:
        for attempt in range(_ATTEMPTS):
            try:
                with self.db.write() as connection:
                    return self._exchange(
                        connection, world_id, registration, now, acquire, release, drop_plans, retry
                    )
            except sa.exc.IntegrityError:  # two worlds created the same key row at once
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _exchange(
        self,
        connection: sa.Connection,
        world_id: str,
        registration: str,
        now: datetime,
        acquire: Sequence[LimitRequest],
        release: Collection[Slot],
        drop_plans: Collection[str],
        retry: Collection[str],
    ) -> LimitOutcome:
        world = connection.execute(
            sa.select(coordinator_records.c.data).where(
                coordinator_records.c["class"] == WORLD, coordinator_records.c.id == world_id
            )
        ).scalar_one_or_none()
        if world is None or world.get("token") != registration:
            return LimitOutcome(fenced=True)
        slots = limit_slots.c
        released: list[tuple[int, str, str]] = []  # (row id, key, state)
        if release or drop_plans:
            plans = {plan for plan, _ in release} | set(drop_plans)
            mine = connection.execute(
                sa.select(slots.id, slots.key, slots.state, slots.execution_plan_id, slots.step_id)
                .where(slots.world_id == world_id, slots.execution_plan_id.in_(sorted(plans)))
                .where(slots.state != SPENT)
            ).all()
            released = [
                (row.id, row.key, row.state)
                for row in mine
                if row.execution_plan_id in drop_plans
                or (row.execution_plan_id, row.step_id) in release
            ]
        wanted = {k.key: k for request in acquire for k in request.keys}
        touched = {key for _, key, _ in released} | set(wanted) | set(retry)
        if not touched:
            return LimitOutcome()
        keys = touched | _keys_of_waiters(connection, touched)
        known = _lock(connection, keys)
        missing = [wanted[k] for k in sorted(set(wanted) - set(known))]
        if missing:
            connection.execute(sa.insert(limits), [_key_row(k) for k in missing])
            known.update({k.key: _key_row(k) for k in missing})
        for key, limit in wanted.items():
            if known[key] != _key_row(limit):  # one key, one limit: the latest word counts
                connection.execute(sa.update(limits).where(limits.c.key == key), _key_row(limit))
                known[key] = _key_row(limit)
        _release(connection, released, known)
        rows = [
            {
                "key": k.key,
                "execution_plan_id": r.execution_plan_id,
                "step_id": r.step_id,
                "world_id": world_id,
                "state": WAITING,
                "requested_at": now,
                "granted_at": None,
            }
            for r in acquire
            for k in sorted(r.keys, key=lambda k: k.key)
        ]
        if rows:
            connection.execute(sa.insert(limit_slots), rows)
        return self._grant(connection, world_id, now, keys, known)

    def _grant(
        self,
        connection: sa.Connection,
        world_id: str,
        now: datetime,
        keys: set[str],
        known: dict[str, dict[str, Any]],
    ) -> LimitOutcome:
        slots = limit_slots.c
        rows = connection.execute(
            sa.select(limit_slots).where(slots.key.in_(sorted(keys))).order_by(slots.id)
        ).all()
        expired = []
        holding: dict[str, int] = defaultdict(int)
        starts: dict[str, list[datetime]] = defaultdict(list)
        requests: dict[Slot, dict[str, Any]] = {}
        for row in rows:
            limit = known.get(row.key, {})
            per = limit.get("per")
            if row.state == WAITING:
                request = requests.setdefault(
                    (row.execution_plan_id, row.step_id),
                    {"place": row.id, "world": row.world_id, "ids": [], "keys": set()},
                )
                request["ids"].append(row.id)
                request["keys"].add(row.key)
                continue
            if row.state == HOLDING:
                holding[row.key] += 1
            if per is not None and row.granted_at is not None:
                if row.granted_at > now - timedelta(seconds=per):
                    starts[row.key].append(row.granted_at)
                elif row.state == SPENT:
                    expired.append(row.id)
            elif row.state == SPENT:
                expired.append(row.id)
        if expired:
            connection.execute(sa.delete(limit_slots).where(slots.id.in_(expired)))
        outcome = LimitOutcome()
        blocked: set[str] = set()
        granted_ids: list[int] = []
        for slot, request in sorted(requests.items(), key=lambda item: item[1]["place"]):
            mine = request["world"] == world_id
            free = not (request["keys"] - keys) and all(
                key not in blocked and _room(known[key], holding[key], starts[key])
                for key in request["keys"]
            )
            if free and mine:
                granted_ids.extend(request["ids"])
                outcome.granted.append(slot)
                for key in request["keys"]:
                    holding[key] += 1
                    starts[key].append(now)
                continue
            if free:
                outcome.wake.add(request["world"])
            elif mine:
                for key in request["keys"] & keys:
                    due = _rate_due(known[key], starts[key])
                    if due is not None and key not in blocked:
                        outcome.due[key] = min(due, outcome.due.get(key, due))
            blocked |= request["keys"]  # first come, first served: nobody passes it
        if granted_ids:
            connection.execute(
                sa.update(limit_slots)
                .where(slots.id.in_(granted_ids))
                .values(state=HOLDING, granted_at=now)
            )
        return outcome

    # -- a dead world -----------------------------------------------------------

    def drop_world(self, world_id: str) -> set[str]:
        slots = limit_slots.c
        with self.db.write() as connection:
            rows = connection.execute(
                sa.select(slots.id, slots.key, slots.state).where(
                    slots.world_id == world_id, slots.state != SPENT
                )
            ).all()
            if not rows:
                return set()
            keys = {row.key for row in rows}
            known = _lock(connection, keys)
            _release(connection, [(r.id, r.key, r.state) for r in rows], known)
            return set(
                connection.execute(
                    sa.select(slots.world_id)
                    .distinct()
                    .where(slots.key.in_(sorted(keys)), slots.state == WAITING)
                ).scalars()
            )

    # -- reading ----------------------------------------------------------------

    def find(
        self, *, key: str | None = None, execution_plan_id: str | None = None
    ) -> list[LimitEntry]:
        slots = limit_slots.c
        query = (
            sa.select(limit_slots, limits.c.concurrency, limits.c.rate, limits.c.per)
            .join(limits, limits.c.key == slots.key)
            .where(slots.state != SPENT)
            .order_by(slots.key, slots.id)
        )
        if key is not None:
            query = query.where(slots.key == key)
        if execution_plan_id is not None:
            keys = sa.select(slots.key).where(slots.execution_plan_id == execution_plan_id)
            query = query.where(slots.key.in_(keys))
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        places: dict[str, list[Slot]] = defaultdict(list)
        entries = []
        for row in rows:
            position = None
            if row.state == WAITING:
                line = places[row.key]
                line.append((row.execution_plan_id, row.step_id))
                position = len(line)
            entries.append(
                LimitEntry(
                    key=row.key,
                    state=row.state,
                    execution_plan_id=row.execution_plan_id,
                    step_id=row.step_id,
                    world_id=row.world_id,
                    requested_at=row.requested_at,
                    granted_at=row.granted_at,
                    concurrency=row.concurrency,
                    rate=row.rate,
                    per=row.per,
                    position=position,
                )
            )
        if execution_plan_id is not None:
            entries = [e for e in entries if e.execution_plan_id == execution_plan_id]
        entries.sort(key=lambda e: (e.key, e.state != HOLDING, e.position or 0))
        return entries


def _key_row(limit: LimitKey) -> dict[str, Any]:
    return {
        "key": limit.key,
        "concurrency": limit.concurrency,
        "rate": limit.rate,
        "per": limit.per,
    }


def _keys_of_waiters(connection: sa.Connection, keys: set[str]) -> set[str]:
    """Every key of the steps waiting on ``keys`` (granted all together or not at all)."""
    slots = limit_slots.c
    waiting = (
        sa.select(slots.execution_plan_id, slots.step_id)
        .where(slots.key.in_(sorted(keys)), slots.state == WAITING)
        .subquery()
    )
    query = (
        sa.select(slots.key)
        .distinct()
        .join(
            waiting,
            sa.and_(
                slots.execution_plan_id == waiting.c.execution_plan_id,
                slots.step_id == waiting.c.step_id,
            ),
        )
        .where(slots.state == WAITING)
    )
    return set(connection.execute(query).scalars())


def _lock(connection: sa.Connection, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Lock the keys' rows in sorted order; their limits, by key (missing: not created)."""
    query = (
        sa.select(limits).where(limits.c.key.in_(sorted(keys))).order_by(limits.c.key)
    ).with_for_update()
    return {row.key: _key_row(LimitKey(**row._mapping)) for row in connection.execute(query)}


def _release(
    connection: sa.Connection,
    released: Sequence[tuple[int, str, str]],
    known: dict[str, dict[str, Any]],
) -> None:
    """Delete released rows; a holder of a rate-limited key stays ``spent`` (its start
    counts until it leaves the window)."""
    spent = [i for i, key, state in released if state == HOLDING and known.get(key, {}).get("per")]
    gone = [i for i, _, _ in released if i not in set(spent)]
    slots = limit_slots.c
    if spent:
        connection.execute(sa.update(limit_slots).where(slots.id.in_(spent)).values(state=SPENT))
    if gone:
        connection.execute(sa.delete(limit_slots).where(slots.id.in_(gone)))


def _room(limit: dict[str, Any], holding: int, starts: list[datetime]) -> bool:
    concurrency, rate = limit.get("concurrency"), limit.get("rate")
    if concurrency is not None and holding >= concurrency:
        return False
    return rate is None or len(starts) < rate


def _rate_due(limit: dict[str, Any], starts: list[datetime]) -> datetime | None:
    """When the window frees a start, if it is the rate that is full."""
    rate, per = limit.get("rate"), limit.get("per")
    if rate is None or per is None or len(starts) < rate:
        return None
    first: datetime = sorted(starts)[len(starts) - rate]
    return first + timedelta(seconds=float(per))
