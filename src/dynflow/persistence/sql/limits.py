"""The limit store over the shared database (see :mod:`dynflow.persistence.limits`).

Every exchange is one transaction: it finds which keys it will count (the keys it
releases, asks for or retries, and every key of the first waiters on those), locks
their ``dynflow_limits`` rows in sorted order (so two worlds never wait on each
other), then releases, queues and grants. Only the world that owns a waiting step
grants it (its rows are fenced by its registration); when another world's step is
first in line and may start, the caller is told to wake that world.

A grant pass reads per key only what can matter, from the index (key, state, id):
the number of holders, for a rate the newest starts inside the window (at most
``rate`` of them), and the first waiters in line (as many as the key has room for),
never the whole line. A step is granted only when it is among the first waiters
read on every one of its keys, so nobody it cannot see is passed over. Plans and
worlds are released with a few set-based statements.
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
from dynflow.persistence.sql import limit_lines as lines
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import coordinator_records, limit_slots, limits

#: attempts of an exchange that met a key row inserted by another world meanwhile
_ATTEMPTS = 3
#: limits of keys remembered (to size the look before locking)
_SEEN_MAX = 10_000
#: plans named by one statement when plans are released
_CHUNK = 500

Slot = tuple[str, int]  # (plan, step)


class SqlLimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        #: the limits of keys seen (only to size the look before locking: may be stale)
        self._seen: dict[str, dict[str, Any]] = {}

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
        if release:
            mine = connection.execute(
                sa.select(slots.id, slots.key, slots.state, slots.execution_plan_id, slots.step_id)
                .where(slots.world_id == world_id)
                .where(slots.execution_plan_id.in_(sorted({plan for plan, _ in release})))
                .where(slots.state != SPENT)
            ).all()
            released = [
                (row.id, row.key, row.state)
                for row in mine
                if (row.execution_plan_id, row.step_id) in release
            ]
        dropped: set[str] = set()
        for chunk in _chunks(drop_plans):
            dropped.update(
                connection.execute(
                    sa.select(slots.key)
                    .distinct()
                    .where(slots.world_id == world_id, slots.execution_plan_id.in_(chunk))
                    .where(slots.state != SPENT)
                ).scalars()
            )
        wanted = {k.key: k for request in acquire for k in request.keys}
        touched = {key for _, key, _ in released} | dropped | set(wanted) | set(retry)
        if not touched:
            return LimitOutcome()
        keys = touched | self._keys_ahead(connection, touched, wanted)
        known = _lock(connection, keys)
        if len(self._seen) > _SEEN_MAX:
            self._seen.clear()
        self._seen.update(known)
        missing = [wanted[k] for k in sorted(set(wanted) - set(known))]
        if missing:
            connection.execute(sa.insert(limits), [_key_row(k) for k in missing])
            known.update({k.key: _key_row(k) for k in missing})
        for key, limit in wanted.items():
            if known[key] != _key_row(limit):  # one key, one limit: the latest word counts
                connection.execute(sa.update(limits).where(limits.c.key == key), _key_row(limit))
                known[key] = _key_row(limit)
                if limit.per is None:  # no window to count spent starts in any more
                    connection.execute(
                        sa.delete(limit_slots).where(slots.key == key, slots.state == SPENT)
                    )
        _release(connection, released, known)
        for chunk in _chunks(drop_plans):
            _drop(
                connection,
                [slots.world_id == world_id, slots.execution_plan_id.in_(chunk)],
                dropped,
                known,
            )
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
        return _grant(connection, world_id, now, keys, known)

    def _keys_ahead(
        self, connection: sa.Connection, keys: set[str], wanted: dict[str, LimitKey]
    ) -> set[str]:
        """Every key of the first waiters on ``keys`` (granted all together or not at
        all), read before the keys are locked (to lock them all in sorted order)."""
        unseen = sorted(keys - set(self._seen) - set(wanted))
        if unseen:
            stored = connection.execute(sa.select(limits).where(limits.c.key.in_(unseen)))
            self._seen.update({r.key: _key_row(LimitKey(**r._mapping)) for r in stored})
        sizes = {
            k: lines.capacity(_key_row(wanted[k]) if k in wanted else self._seen.get(k, {}))
            for k in keys
        }
        _, requests = lines.read_heads(connection, sizes)
        return {key for request in requests.values() for key in request.rows}

    # -- a dead world -----------------------------------------------------------

    def drop_world(self, world_id: str) -> set[str]:
        slots = limit_slots.c
        with self.db.write() as connection:
            keys = set(
                connection.execute(
                    sa.select(slots.key)
                    .distinct()
                    .where(slots.world_id == world_id, slots.state != SPENT)
                ).scalars()
            )
            if not keys:
                return set()
            known = _lock(connection, keys)
            _drop(connection, [slots.world_id == world_id], keys, known)
            _, requests = lines.read_heads(
                connection, {k: lines.capacity(known.get(k, {})) for k in keys}
            )
            return {request.world for request in requests.values()}

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


def _drop(
    connection: sa.Connection,
    where: list[Any],
    keys: Iterable[str],
    known: dict[str, dict[str, Any]],
) -> None:
    """Release every row matching ``where`` (its keys locked) in two statements: the
    holders of rate-limited keys stay ``spent``, the rest is deleted."""
    slots = limit_slots.c
    rated = sorted(k for k in keys if known.get(k, {}).get("per"))
    if rated:
        connection.execute(
            sa.update(limit_slots)
            .where(*where, slots.state == HOLDING, slots.key.in_(rated))
            .values(state=SPENT)
        )
    connection.execute(sa.delete(limit_slots).where(*where, slots.state.in_((WAITING, HOLDING))))


def _chunks(values: Collection[str]) -> Iterable[list[str]]:
    ordered = sorted(values)
    for start in range(0, len(ordered), _CHUNK):
        yield ordered[start : start + _CHUNK]


def _grant(
    connection: sa.Connection,
    world_id: str,
    now: datetime,
    keys: set[str],
    known: dict[str, dict[str, Any]],
) -> LimitOutcome:
    """Grant this world's first waiters on ``keys`` (locked) that may start, in order."""
    known = {key: known.get(key, {}) for key in keys}
    holding, starts = lines.read_counts(connection, keys, known, now)
    sizes = {
        key: min(max(lines.room(known[key], holding[key], starts[key]), 1), lines.HEAD_CAP)
        for key in keys
    }
    heads, requests = lines.read_heads(connection, sizes)
    outcome = LimitOutcome()
    blocked: set[str] = set()
    granted_ids: list[int] = []
    for slot, request in sorted(requests.items(), key=lambda item: item[1].place):
        mine = request.world == world_id
        counted = [key for key in request.rows if key in keys]
        room = all(
            request.rows[key] in heads[key]
            and key not in blocked
            and lines.room(known[key], holding[key], starts[key]) > 0
            for key in counted
        )
        if room and len(counted) == len(request.rows) and mine:
            granted_ids.extend(request.rows.values())
            outcome.granted.append(slot)
            for key in request.rows:
                holding[key] += 1
                starts[key].append(now)
            continue
        if room and len(counted) == len(request.rows):
            outcome.wake.add(request.world)
        elif room:  # a key not locked by this pass: a pass of its own world decides
            if mine:
                outcome.more = True
            else:
                outcome.wake.add(request.world)
        elif mine:
            for key in counted:
                due = _rate_due(known[key], starts[key])
                if due is not None and key not in blocked:
                    outcome.due[key] = min(due, outcome.due.get(key, due))
        blocked.update(request.rows)  # first come, first served: nobody passes it
    if granted_ids:
        connection.execute(
            sa.update(limit_slots)
            .where(limit_slots.c.id.in_(granted_ids))
            .values(state=HOLDING, granted_at=now)
        )
        # a key's line was read only in part and all of it may have started: go on
        outcome.more = outcome.more or any(
            sizes[k] == lines.HEAD_CAP and len(heads[k]) >= lines.HEAD_CAP for k in keys
        )
    return outcome


def _rate_due(limit: dict[str, Any], starts: list[datetime]) -> datetime | None:
    """When the window frees a start, if it is the rate that is full."""
    rate, per = limit.get("rate"), limit.get("per")
    if rate is None or per is None or len(starts) < rate:
        return None
    first: datetime = sorted(starts)[len(starts) - rate]
    return first + timedelta(seconds=float(per))
