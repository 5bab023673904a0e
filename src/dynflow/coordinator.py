"""The coordinator: the world registry and locks, as records in the shared database.

A record is ``(class, id, owner_id, data)``. A lock is a record whose primary
key makes it exclusive; its owner is the world holding it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dynflow.errors import DynflowError, LockTaken, PersistenceError
from dynflow.persistence.records import EXECUTION_LOCK, INVALIDATION_LOCK, PLANNED_LOCK, WORLD
from dynflow.persistence.sql.database import Database
from dynflow.persistence.sql.locks import deadlocked, lock_taken
from dynflow.persistence.tables import coordinator_records as records

#: attempts of a write that the database may end as a deadlock victim
_DEADLOCK_TRIES = 3

__all__ = [
    "EXECUTION_LOCK",
    "INVALIDATION_LOCK",
    "PLANNED_LOCK",
    "WORLD",
    "Coordinator",
    "LockRecord",
    "WorldRecord",
]


@dataclass(frozen=True)
class WorldRecord:
    id: str
    executor: bool
    meta: Mapping[str, Any] = field(default_factory=dict)
    queues: tuple[str, ...] = ()
    heartbeat_at: datetime | None = None
    #: the world's own heartbeat interval and lease (seconds): it is judged by them,
    #: not by the checking world's settings (None in records that do not say)
    heartbeat_interval: float | None = None
    lease: float | None = None

    def is_local_and_gone(self) -> bool:
        """True when this world ran on this host in a process that no longer exists."""
        if self.meta.get("hostname") != socket.gethostname():
            return False
        pid = self.meta.get("pid")
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


@dataclass(frozen=True)
class LockRecord:
    lock_class: str
    id: str
    owner_id: str | None
    data: Mapping[str, Any]


class Coordinator:
    """The registry and locks, as seen by one world.

    Fencing is by registration, not by world id: each registration gets a new random
    :attr:`token`, kept in the world's record, and every fenced write names the token
    it is made under (``PersistencePort.apply_fenced``). A world declared dead has its
    record and locks deleted; when it learns of it, it drops the plans it held and
    registers again with a new token, so whatever it still had under the old one
    is fenced off even though the world id is the same. A new world id per
    registration would do that too, but the id is what requests, envelopes, history
    and operators name a world by: those must not change under a running world.
    """

    def __init__(self, db: Database, world_id: str) -> None:
        self.db = db
        self.world_id = world_id
        #: this world's registration now (None until registered)
        self.token: str | None = None

    # -- world registry -------------------------------------------------------

    def register_world(
        self,
        *,
        executor: bool,
        queues: Iterable[str],
        meta: Mapping[str, Any],
        heartbeat_interval: float | None = None,
        lease: float | None = None,
    ) -> None:
        """Register (again) under a new :attr:`token`; ``heartbeat_interval`` and
        ``lease`` are the ones other worlds judge this world by."""
        token = str(uuid.uuid4())
        data: dict[str, Any] = {
            "executor": executor,
            "queues": list(queues),
            "meta": dict(meta),
            "heartbeat_at": self.database_now().isoformat(),
            "token": token,
        }
        if heartbeat_interval is not None:
            data["heartbeat_interval"] = heartbeat_interval
        if lease is not None:
            data["lease"] = lease
        with self.db.write() as connection:
            connection.execute(
                sa.delete(records).where(records.c["class"] == WORLD, records.c.id == self.world_id)
            )
            connection.execute(
                sa.insert(records),
                [{"class": WORLD, "id": self.world_id, "owner_id": self.world_id, "data": data}],
            )
        self.token = token

    def registration(self) -> str:
        """The token of this world's registration, under which it writes."""
        if self.token is None:
            raise DynflowError(f"world {self.world_id} is not registered")
        return self.token

    def database_now(self) -> datetime:
        """The database's clock (UTC): leases are judged by it, not by each host's clock."""
        return self.db.now()

    def heartbeat(self, meta: Mapping[str, Any] | None = None) -> bool:
        """Renew this world's lease, stamped with the database's clock; False when the
        world's record is gone (another world declared it dead) or is another
        registration's. ``meta``: entries to put into its record's meta (replacing
        those of the same name), e.g. how busy its worker pools are."""
        stamp = self.database_now()
        with self.db.write() as connection:
            row = connection.execute(
                sa.select(records.c.data).where(
                    records.c["class"] == WORLD, records.c.id == self.world_id
                )
            ).one_or_none()
            if row is None or (row.data or {}).get("token") != self.token:
                return False
            data = dict(row.data) | {"heartbeat_at": stamp.isoformat()}
            if meta:
                data["meta"] = dict(data.get("meta") or {}) | dict(meta)
            connection.execute(
                sa.update(records)
                .where(records.c["class"] == WORLD, records.c.id == self.world_id)
                .values(data=data)
            )
        return True

    def unregister_world(
        self, world_id: str | None = None, *, lock_wait: float | None = None
    ) -> None:
        """Delete a world's record and every lock it holds. ``lock_wait``: fail
        (:class:`PersistenceError`) rather than wait longer for rows another session
        holds locked (a process stopped inside a transaction). A deadlock with another
        world's write is tried again (the database undid this transaction)."""
        target = world_id or self.world_id
        for attempt in range(_DEADLOCK_TRIES):
            try:
                with self.db.write(lock_wait=lock_wait) as connection:
                    # two statements, each on its index: one with OR walks (and locks)
                    # more of the table on MySQL/MariaDB
                    connection.execute(sa.delete(records).where(records.c.owner_id == target))
                    connection.execute(
                        sa.delete(records).where(
                            records.c["class"] == WORLD, records.c.id == target
                        )
                    )
                return
            except PersistenceError as exc:
                if attempt + 1 == _DEADLOCK_TRIES or not deadlocked(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def find_worlds(self, active_executors_only: bool = False) -> list[WorldRecord]:
        with self.db.read() as connection:
            rows = connection.execute(
                sa.select(records).where(records.c["class"] == WORLD).order_by(records.c.id)
            ).all()
        worlds = [_world(row._mapping) for row in rows]
        if active_executors_only:
            worlds = [w for w in worlds if w.executor]
        return worlds

    def find_stale_worlds(self, lease: float) -> list[WorldRecord]:
        """Worlds whose process is gone (same host) or whose heartbeat is older than
        their own lease (``lease`` seconds for a record without one) by the database's
        clock."""
        now = self.database_now()
        return [
            w
            for w in self.find_worlds()
            if w.id != self.world_id
            and (
                w.is_local_and_gone()
                or (
                    w.heartbeat_at is not None
                    and w.heartbeat_at < now - timedelta(seconds=w.lease or lease)
                )
            )
        ]

    # -- locks ----------------------------------------------------------------

    def lock_row(
        self, lock_class: str, lock_id: str, data: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "class": lock_class,
            "id": lock_id,
            "owner_id": self.world_id,
            "data": dict(data or {}),
        }

    def acquire(self, lock_class: str, lock_id: str, data: Mapping[str, Any] | None = None) -> None:
        """Take a lock for this world; raises :class:`LockTaken` if someone holds it."""
        try:
            with self.db.write() as connection:
                connection.execute(sa.insert(records), [self.lock_row(lock_class, lock_id, data)])
        except sa.exc.IntegrityError:
            holder = self.find_locks(lock_class=lock_class, id=lock_id)
            raise LockTaken(lock_class, lock_id, holder[0].owner_id if holder else None) from None

    def acquire_many(self, lock_class: str, lock_ids: Sequence[str]) -> None:
        """Take many locks of one class in one write; raises :class:`LockTaken` (and
        takes none) if someone holds one of them."""
        rows = [self.lock_row(lock_class, lock_id) for lock_id in lock_ids]
        if not rows:
            return
        try:
            with self.db.write() as connection:
                connection.execute(sa.insert(records), rows)
        except sa.exc.IntegrityError:
            raise lock_taken(self.db, rows) from None

    def release(self, lock_class: str, lock_id: str) -> None:
        with self.db.write_statement() as connection:
            connection.execute(
                sa.delete(records).where(
                    records.c["class"] == lock_class,
                    records.c.id == lock_id,
                    records.c.owner_id == self.world_id,
                )
            )

    def hand_lock(
        self, lock_class: str, lock_id: str, world_id: str, data: Mapping[str, Any]
    ) -> bool:
        """Give a lock this world holds to another registered world; False (and the lock
        stays here) when this world does not hold it or that world is not registered
        (nobody would ever release a lock of a world that is gone)."""
        with self.db.write() as connection:
            registered = connection.execute(
                sa.select(records.c.id)
                .where(records.c["class"] == WORLD, records.c.id == world_id)
                .with_for_update()  # it cannot unregister (and drop its locks) meanwhile
            ).one_or_none()
            if registered is None:
                return False
            moved = connection.execute(
                sa.update(records)
                .where(
                    records.c["class"] == lock_class,
                    records.c.id == lock_id,
                    records.c.owner_id == self.world_id,
                )
                .values(owner_id=world_id, data=dict(data))
            )
        return bool(moved.rowcount)

    def execution_lock_owner(self, plan_id: str) -> str | None:
        """The world holding the plan's execution lock, if any."""
        locks = self.find_locks(lock_class=EXECUTION_LOCK, id=plan_id)
        return locks[0].owner_id if locks else None

    def find_locks(self, **filters: Any) -> list[LockRecord]:
        """Locks matching ``lock_class``/``class``, ``id`` and ``owner_id`` filters. The
        hold of a world on the plans it planned (``PLANNED_LOCK``) is bookkeeping, not a
        lock anyone waits for: listed only when asked for by its class."""
        query = sa.select(records).where(records.c["class"] != WORLD)
        if "class" not in filters and "lock_class" not in filters:
            query = query.where(records.c["class"] != PLANNED_LOCK)
        for name, value in filters.items():
            column = records.c["class"] if name in ("class", "lock_class") else records.c[name]
            query = query.where(column == value)
        with self.db.read() as connection:
            rows = connection.execute(query.order_by(records.c.id)).all()
        return [LockRecord(r._mapping["class"], r.id, r.owner_id, r.data or {}) for r in rows]


def _world(row: Mapping[Any, Any]) -> WorldRecord:
    data = row["data"] or {}
    beat = data.get("heartbeat_at")
    return WorldRecord(
        id=row["id"],
        executor=bool(data.get("executor")),
        meta=data.get("meta", {}),
        queues=tuple(data.get("queues", ())),
        heartbeat_at=datetime.fromisoformat(beat) if beat else None,
        heartbeat_interval=_seconds(data.get("heartbeat_interval")),
        lease=_seconds(data.get("lease")),
    )


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None
