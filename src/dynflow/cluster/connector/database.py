"""The database connector: envelopes are rows of ``dynflow_envelopes``.

A receiver claims its rows (oldest first) and deletes them in one transaction.
On PostgreSQL a NOTIFY on the receiver's channel wakes it at once; the NOTIFY
is sent after the envelope is committed, never inside the state-changing
transactions, and a receiver that missed one still finds its envelopes on its
next poll. Elsewhere receivers poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dynflow.cluster.connector import Receive
from dynflow.cluster.connector.messages import Envelope, decode, encode
from dynflow.coordinator import WORLD
from dynflow.errors import NotFound
from dynflow.persistence.bulk import channel_sql
from dynflow.persistence.database import Database
from dynflow.persistence.tables import coordinator_records as records
from dynflow.persistence.tables import envelopes
from dynflow.serialization import dumps

log = logging.getLogger(__name__)

_CLAIM = 200  # envelopes claimed per transaction at most


_PG_SEND = sa.text(
    "WITH e AS (INSERT INTO dynflow_envelopes (receiver_id, data) "
    "SELECT id, :data FROM dynflow_coordinator_records "
    "WHERE class = 'world' AND id = :receiver_id RETURNING id) "
    "SELECT pg_notify(:channel, '') FROM e"
)
#: an envelope is written only for a registered receiver (one row at most: the key)
_SEND = sa.insert(envelopes).from_select(
    ["receiver_id", "data"],
    sa.select(records.c.id, sa.bindparam("data", type_=sa.Text)).where(
        records.c["class"] == WORLD, records.c.id == sa.bindparam("receiver_id")
    ),
)
_PG_SEND_MANY = sa.text(
    "WITH e AS (INSERT INTO dynflow_envelopes (receiver_id, data) "
    "SELECT w.id, x.data FROM json_to_recordset(CAST(:rows AS json)) "
    "AS x(n integer, receiver_id text, data text) "
    "JOIN dynflow_coordinator_records AS w ON w.class = 'world' AND w.id = x.receiver_id "
    "ORDER BY x.n RETURNING receiver_id) "
    f"SELECT e.receiver_id, pg_notify({channel_sql('e.receiver_id')}, '') FROM e"
)
_PG_CLAIM = sa.text(
    "DELETE FROM dynflow_envelopes WHERE id IN (SELECT id FROM dynflow_envelopes "
    "WHERE receiver_id = :receiver_id ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED) "
    "RETURNING id, data"
)


def channel(world_id: str) -> str:
    return "dynflow_" + world_id.replace("-", "")[:40]


class DatabaseConnector:
    reaches_other_processes = True

    def __init__(self, db: Database, *, poll_interval: float = 0.05) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Any = None
        self._world_id: str | None = None
        self._notify = db.name == "postgresql"

    def start(self, world_id: str, receive: Receive) -> None:
        self._world_id = world_id
        if self._notify:
            self._listener = self._listen(world_id)
        self._thread = threading.Thread(
            target=self._run,
            args=(world_id, receive),
            name=f"dynflow-connector-{world_id[:8]}",
            daemon=True,
        )
        self._thread.start()

    def send(self, envelope: Envelope) -> None:
        """Write the envelope; raises :class:`NotFound` (writing nothing) when its
        receiver is not a registered world: nobody would ever read it."""
        row = {"receiver_id": envelope.receiver_id, "data": encode(envelope)}
        if self._notify:  # one round trip: the envelope and its wake-up, atomically
            written = len(self.db.run(_PG_SEND, row | {"channel": channel(envelope.receiver_id)}))
        else:
            with self.db.write() as connection:
                written = connection.execute(_SEND, row).rowcount
        if not written:
            raise NotFound(f"world {envelope.receiver_id} is not registered (is it running?)")

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        """Write envelopes at once (in order), each only if its receiver is a registered
        world; the receivers that are not (their envelopes are dropped)."""
        if not batch:
            return set()
        receivers = {e.receiver_id for e in batch}
        if self._notify:  # one statement; PostgreSQL sends one wake-up per receiver
            rows = [
                {"n": n, "receiver_id": e.receiver_id, "data": encode(e)}
                for n, e in enumerate(batch)
            ]
            sent = self.db.run(_PG_SEND_MANY, {"rows": dumps(rows)})
            return receivers - {r[0] for r in sent}
        registered = sa.select(records.c.id).where(
            records.c["class"] == WORLD, records.c.id.in_(sorted(receivers))
        )
        with self.db.write() as connection:
            known = set(connection.execute(registered).scalars())
            rows = [
                {"receiver_id": e.receiver_id, "data": encode(e)}
                for e in batch
                if e.receiver_id in known
            ]
            if rows:
                connection.execute(sa.insert(envelopes), rows)
        return receivers - known

    def _wake_up(self, world_id: str) -> None:
        with self.db.write_statement() as connection:
            connection.execute(
                sa.text("SELECT pg_notify(:channel, '')"), {"channel": channel(world_id)}
            )

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._listener is not None and self._world_id is not None:
            try:
                self._wake_up(self._world_id)  # ends the listener's wait at once
            except Exception:
                log.debug("could not wake the listener", exc_info=True)
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()

    # -- receiving --------------------------------------------------------------------

    def _listen(self, world_id: str) -> Any:
        import psycopg

        url = self.db.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        connection = psycopg.connect(conninfo, autocommit=True)
        connection.execute(f'LISTEN "{channel(world_id)}"')
        return connection

    def _wait(self) -> None:
        if self._listener is None:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            return
        try:  # the fallback poll also catches a notification that was missed
            for _ in self._listener.notifies(timeout=1.0, stop_after=1):
                break
        except Exception:
            if not self._stopped.is_set():
                log.exception("listening for envelopes failed")
                self._stopped.wait(self.poll_interval)

    def _run(self, world_id: str, receive: Receive) -> None:
        while not self._stopped.is_set():
            try:
                rows = self._claim(world_id)
            except Exception:
                log.exception("cannot read envelopes")
                self._stopped.wait(1.0)
                continue
            for row_id, data in rows:
                try:
                    envelope = decode(data)
                except ValueError as exc:
                    log.warning("dropping malformed envelope %s: %s", row_id, exc)
                    continue
                try:
                    receive(envelope)
                except Exception:
                    log.exception("handling envelope %s failed", row_id)
            if len(rows) < _CLAIM:
                self._wait()

    def _claim(self, world_id: str) -> list[tuple[int, str]]:
        if self._notify:  # one statement claims and deletes
            rows = self.db.run(_PG_CLAIM, {"receiver_id": world_id, "limit": _CLAIM})
            return sorted((r[0], r[1]) for r in rows)
        probe = sa.select(envelopes.c.id).where(envelopes.c.receiver_id == world_id).limit(1)
        with self.db.read() as connection:  # cheap when idle: no write lock taken
            if connection.execute(probe).first() is None:
                return []
        with self.db.write() as connection:
            claimed = connection.execute(
                sa.select(envelopes.c.id, envelopes.c.data)
                .where(envelopes.c.receiver_id == world_id)
                .order_by(envelopes.c.id)
                .limit(_CLAIM)
            ).all()
            if claimed:
                connection.execute(
                    sa.delete(envelopes).where(envelopes.c.id.in_([r.id for r in claimed]))
                )
        return [(r.id, r.data) for r in claimed]

    def drop_orphans(self) -> int:
        """Delete the envelopes addressed to worlds no longer registered (answers that came
        after their world terminated); nothing else would ever read them."""
        registered = sa.select(records.c.id).where(records.c["class"] == WORLD)
        orphaned = envelopes.c.receiver_id.not_in(registered)
        probe = sa.select(envelopes.c.id).where(orphaned).limit(1)
        with self.db.read() as connection:  # cheap when there are none: no write lock
            if connection.execute(probe).first() is None:
                return 0
        with self.db.write() as connection:
            result = connection.execute(sa.delete(envelopes).where(orphaned))
        return int(result.rowcount or 0)

    def drop_for(self, world_id: str) -> int:
        """Delete the envelopes addressed to a world that is gone."""
        with self.db.write() as connection:
            result = connection.execute(
                sa.delete(envelopes).where(envelopes.c.receiver_id == world_id)
            )
        return int(result.rowcount or 0)
