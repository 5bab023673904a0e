"""PostgreSQL envelopes: one statement per send or claim, and LISTEN/NOTIFY wake-ups.

A NOTIFY on the receiver's channel is sent in the statement that writes its
envelopes, so it fires only once they are committed; a receiver that missed one
still finds its envelopes on its next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.records import WORLD
from dynflow.persistence.sql.envelopes import SqlEnvelopeStore
from dynflow.persistence.tables import coordinator_records, envelopes
from dynflow.serialization import dumps

_SEND = sa.text(
    f"WITH e AS (INSERT INTO {envelopes.name} (receiver_id, data) "
    f"SELECT id, :data FROM {coordinator_records.name} "
    f"WHERE class = '{WORLD}' AND id = :receiver_id RETURNING id) "
    "SELECT pg_notify(:channel, '') FROM e"
)
_SEND_MANY = sa.text(
    f"WITH e AS (INSERT INTO {envelopes.name} (receiver_id, data) "
    "SELECT w.id, x.data FROM json_to_recordset(CAST(:rows AS json)) "
    "AS x(n integer, receiver_id text, data text) "
    f"JOIN {coordinator_records.name} AS w ON w.class = '{WORLD}' AND w.id = x.receiver_id "
    "ORDER BY x.n RETURNING receiver_id) "
    "SELECT c.receiver_id, pg_notify(c.channel, '') "
    "FROM json_to_recordset(CAST(:channels AS json)) AS c(receiver_id text, channel text) "
    "WHERE c.receiver_id IN (SELECT receiver_id FROM e)"
)
# the ids are taken once (an InitPlan): a subquery joined with IN may be run again for
# each row deleted, and SKIP LOCKED then passes over the rows this statement already
# deleted, so that more than :limit envelopes were claimed
_CLAIM = sa.text(
    f"DELETE FROM {envelopes.name} WHERE id = ANY(ARRAY(SELECT id FROM {envelopes.name} "
    "WHERE receiver_id = :receiver_id ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)) "
    "RETURNING id, data"
)
#: the same, committed without waiting for the WAL flush: ``set_config(..., true)`` sets
#: ``synchronous_commit`` for this statement's own (autocommitted) transaction only
_CLAIM_LAZILY = sa.text(
    "WITH lazily AS (SELECT set_config('synchronous_commit', 'off', true)) "
    f"DELETE FROM {envelopes.name} WHERE id = ANY(ARRAY(SELECT id FROM {envelopes.name} "
    "WHERE receiver_id = :receiver_id ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)) "
    "AND EXISTS (SELECT 1 FROM lazily) RETURNING id, data"
)


def channel(world_id: str) -> str:
    """The LISTEN/NOTIFY channel of a world: ``dynflow_`` and its id without dashes,
    cut to 40 characters (channel names are identifiers of at most 63 bytes)."""
    return "dynflow_" + world_id.replace("-", "")[:40]


class PostgresListener:
    """A connection of its own LISTENing on one world's channel."""

    def __init__(self, conninfo: str, world_id: str) -> None:
        import psycopg

        self._connection: Any = psycopg.connect(conninfo, autocommit=True)
        self._connection.execute(f'LISTEN "{channel(world_id)}"')

    def wait(self, timeout: float) -> None:
        for _ in self._connection.notifies(timeout=timeout, stop_after=1):
            break

    def close(self) -> None:
        self._connection.close()


class PostgresEnvelopeStore(SqlEnvelopeStore):
    def send(self, receiver_id: str, data: str) -> bool:
        # one round trip: the envelope and its wake-up, atomically
        parameters = {"receiver_id": receiver_id, "data": data, "channel": channel(receiver_id)}
        return bool(self.db.run(_SEND, parameters))

    def send_many(self, batch: Sequence[tuple[str, str]]) -> set[str]:
        # one statement; one wake-up per receiver
        if not batch:
            return set()
        receivers = {receiver for receiver, _ in batch}
        rows = [{"n": n, "receiver_id": r, "data": data} for n, (r, data) in enumerate(batch)]
        channels = [{"receiver_id": r, "channel": channel(r)} for r in sorted(receivers)]
        sent = self.db.run(_SEND_MANY, {"rows": dumps(rows), "channels": dumps(channels)})
        return receivers - {r[0] for r in sent}

    def claim(self, world_id: str, limit: int, durable: bool = True) -> list[tuple[int, str]]:
        # one statement claims and deletes; concurrent claims skip each other's rows
        statement = _CLAIM if durable else _CLAIM_LAZILY
        rows = self.db.run(statement, {"receiver_id": world_id, "limit": limit})
        return sorted((r[0], r[1]) for r in rows)

    def listen(self, world_id: str) -> PostgresListener:
        url = self.db.url.set(drivername="postgresql")
        return PostgresListener(url.render_as_string(hide_password=False), world_id)

    def wake(self, world_id: str) -> None:
        self.db.run(sa.text("SELECT pg_notify(:channel, '')"), {"channel": channel(world_id)})
