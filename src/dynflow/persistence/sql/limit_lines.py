"""Reading a key's line for a grant pass (see :mod:`dynflow.persistence.sql.limits`):
holders counted, a rate's newest starts inside its window, and the first waiters of
each key with every row of their requests, in a few statements of a few shapes
(built once each, so that a pass over many keys costs no statement building)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.limits import HOLDING, SPENT, WAITING
from dynflow.persistence.tables import limit_slots

Slot = tuple[str, int]  # (plan, step)

#: most waiters of one key read by one pass (more room: the next pass grants more)
HEAD_CAP = 500
#: a key whose waiting line is longer is read by its first rows only (keys seen so)
LONG_LINE = 64
_LONG: set[str] = set()


@dataclass
class Request:
    """A waiting step seen in a pass: its world and its row id on each key."""

    world: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def place(self) -> int:
        return min(self.rows.values())


def _union(parts: Sequence[sa.Select[Any]]) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """Each part (ordered, limited) as a derived table, all of them in one statement."""
    if len(parts) == 1:
        return parts[0]
    return sa.union_all(*(sa.select(*part.subquery().c) for part in parts))


def _padded(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``items`` with the last one repeated up to a power of two: statements of a few
    shapes only, compiled once each (a repeated part reads the same rows again)."""
    size = 1
    while size < len(items):
        size *= 2
    return items + items[-1:] * (size - len(items))


def capacity(limit: dict[str, Any]) -> int:
    """At most how many steps of a key could start at once (before counting)."""
    bounds = [b for b in (limit.get("concurrency"), limit.get("rate")) if b is not None]
    return max(1, min([*(int(b) for b in bounds), HEAD_CAP]))


@functools.cache
def _heads_query(whole: bool, size: int) -> sa.Select[Any]:
    """The waiting rows of the keys ``whole`` (if set: their whole lines, short), and
    the first ``n{i}`` of key ``k{i}`` for ``i < size``, each joined to all the
    waiting rows of the request it belongs to (built once per shape)."""
    slots = limit_slots.c
    head = sa.select(slots.id, slots.key, slots.execution_plan_id, slots.step_id)
    parts = [
        head.where(slots.key == sa.bindparam(f"k{i}"), slots.state == WAITING)
        .order_by(slots.id)
        .limit(sa.bindparam(f"n{i}", type_=sa.Integer))
        for i in range(size)
    ]
    if whole:
        parts.append(
            head.where(slots.key.in_(sa.bindparam("whole", expanding=True))).where(
                slots.state == WAITING
            )
        )
    line = _union(parts).subquery()
    return (
        sa.select(
            slots.id,
            slots.key,
            slots.execution_plan_id,
            slots.step_id,
            slots.world_id,
            line.c.key.label("head_key"),
            line.c.id.label("head_id"),
        )
        .join(
            line,
            sa.and_(
                slots.execution_plan_id == line.c.execution_plan_id,
                slots.step_id == line.c.step_id,
            ),
        )
        .where(slots.state == WAITING)
    )


@functools.cache
def _starts_query(size: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """The newest ``n{i}`` starts of key ``k{i}`` after ``w{i}``, for ``i < size``."""
    slots = limit_slots.c
    return _union(
        [
            sa.select(slots.id, slots.key, slots.granted_at)
            .where(slots.key == sa.bindparam(f"k{i}"), slots.state.in_((HOLDING, SPENT)))
            .where(slots.granted_at > sa.bindparam(f"w{i}", type_=slots.granted_at.type))
            .order_by(slots.granted_at.desc())
            .limit(sa.bindparam(f"n{i}", type_=sa.Integer))
            for i in range(size)
        ]
    )


def read_heads(
    connection: sa.Connection, sizes: dict[str, int]
) -> tuple[dict[str, set[int]], dict[Slot, Request]]:
    """The first ``sizes[key]`` (or more) waiting rows of each key (row ids by key),
    and the requests they belong to with all their waiting rows, in one statement.

    A key seen with a long line (:data:`LONG_LINE`) is read ``ORDER BY id LIMIT n``;
    the others whole, together (cheaper for many short lines). A line that grew long
    is read whole once, then by its first rows; one that got short again, whole."""
    heads: dict[str, set[int]] = defaultdict(set)
    requests: dict[Slot, Request] = {}
    if not sizes:
        return heads, requests
    long = _padded(sorted((k, n) for k, n in sizes.items() if k in _LONG))
    whole = sorted(k for k in sizes if k not in _LONG)
    params: dict[str, Any] = {"whole": whole} if whole else {}
    for i, (key, size) in enumerate(long):
        params[f"k{i}"], params[f"n{i}"] = key, size
    lines: dict[str, set[int]] = defaultdict(set)
    for row in connection.execute(_heads_query(bool(whole), len(long)), params):
        lines[row.head_key].add(row.head_id)
        request = requests.setdefault((row.execution_plan_id, row.step_id), Request(row.world_id))
        request.rows[row.key] = row.id
    for key in sizes:
        line = sorted(lines.get(key, ()))
        if len(line) > LONG_LINE:
            _LONG.add(key)
        elif key in _LONG and len(line) < sizes[key]:
            _LONG.discard(key)
        heads[key] = set(line)  # a whole line: every waiter is visible
    return heads, requests


def read_counts(
    connection: sa.Connection, keys: set[str], known: dict[str, dict[str, Any]], now: datetime
) -> tuple[dict[str, int], dict[str, list[datetime]]]:
    """Holders by key, and for rate-limited keys the newest starts inside the window
    (at most ``rate``: enough to tell whether there is room, and when)."""
    slots = limit_slots.c
    holding: dict[str, int] = defaultdict(int)
    query = (
        sa.select(slots.key, sa.func.count())
        .where(slots.key.in_(sorted(keys)), slots.state == HOLDING)
        .group_by(slots.key)
    )
    for key, count in connection.execute(query):
        holding[key] = int(count)
    starts: dict[str, list[datetime]] = defaultdict(list)
    parts: list[tuple[str, int]] = []
    expired = []
    for key in sorted(keys):
        rate, per = known.get(key, {}).get("rate"), known.get(key, {}).get("per")
        if per is None:
            continue
        window = now - timedelta(seconds=float(per))
        expired.append(sa.and_(slots.key == key, slots.granted_at <= window))
        if rate is not None:
            parts.append((key, rate))
    if expired:  # spent starts that left their window count no more
        connection.execute(sa.delete(limit_slots).where(slots.state == SPENT, sa.or_(*expired)))
    items = _padded(parts)
    if items:
        params: dict[str, Any] = {}
        for i, (key, rate) in enumerate(items):
            params[f"k{i}"], params[f"n{i}"] = key, rate
            params[f"w{i}"] = now - timedelta(seconds=float(known[key]["per"]))
        seen = set()
        for row in connection.execute(_starts_query(len(items)), params):
            if row.id not in seen:  # a part repeated to pad the statement
                seen.add(row.id)
                starts[row.key].append(row.granted_at)
    return holding, starts


def room(limit: dict[str, Any], holding: int, starts: list[datetime]) -> int:
    """How many more steps of the key may start now."""
    room = HEAD_CAP
    concurrency, rate = limit.get("concurrency"), limit.get("rate")
    if concurrency is not None:
        room = min(room, concurrency - holding)
    if rate is not None:
        room = min(room, rate - len(starts))
    return max(room, 0)
