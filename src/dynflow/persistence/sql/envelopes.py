"""The envelope store: messages between worlds as rows of ``dynflow_envelopes``.

An envelope is written only for a registered world (nobody else would ever read
it). Its receiver claims its rows oldest first and deletes them in the same
transaction. Here receivers poll; see the PostgreSQL store for wake-ups.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from dynflow.persistence.port import Listener
from dynflow.persistence.records import WORLD
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import coordinator_records as records
from dynflow.persistence.tables import envelopes

#: one row at most: (class, id) is the records' key
_SEND = sa.insert(envelopes).from_select(
    ["receiver_id", "data"],
    sa.select(records.c.id, sa.bindparam("data", type_=sa.Text)).where(
        records.c["class"] == WORLD, records.c.id == sa.bindparam("receiver_id")
    ),
)


class SqlEnvelopeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def send(self, receiver_id: str, data: str) -> bool:
        """Write one envelope if its receiver is a registered world; True when written."""
        with self.db.write() as connection:
            return self.send_in(connection, receiver_id, data)

    def send_in(self, connection: sa.Connection, receiver_id: str, data: str) -> bool:
        """:meth:`send` inside the caller's transaction (with what else it writes)."""
        result = connection.execute(_SEND, {"receiver_id": receiver_id, "data": data})
        return bool(result.rowcount)

    def send_many(self, batch: Sequence[tuple[str, str]]) -> set[str]:
        """Write (receiver id, text) envelopes at once, in order, each only if its
        receiver is a registered world; the receivers that are not."""
        if not batch:
            return set()
        receivers = {receiver for receiver, _ in batch}
        registered = sa.select(records.c.id).where(
            records.c["class"] == WORLD, records.c.id.in_(sorted(receivers))
        )
        with self.db.write() as connection:
            known = set(connection.execute(registered).scalars())
            rows = [{"receiver_id": r, "data": data} for r, data in batch if r in known]
            if rows:
                connection.execute(sa.insert(envelopes), rows)
        return receivers - known

    def claim(self, world_id: str, limit: int, durable: bool = True) -> list[tuple[int, str]]:
        """Take (and delete) up to ``limit`` envelopes of ``world_id``: (id, text), oldest
        first (always durably here)."""
        probe = sa.select(envelopes.c.id).where(envelopes.c.receiver_id == world_id).limit(1)
        with self.db.read() as connection:  # cheap when idle: no write lock taken
            if connection.execute(probe).first() is None:
                return []
        with self.db.write() as connection:
            claimed = connection.execute(
                sa.select(envelopes.c.id, envelopes.c.data)
                .where(envelopes.c.receiver_id == world_id)
                .order_by(envelopes.c.id)
                .limit(limit)
            ).all()
            if claimed:
                connection.execute(
                    sa.delete(envelopes).where(envelopes.c.id.in_([r.id for r in claimed]))
                )
        return [(r.id, r.data) for r in claimed]

    def drop_orphans(self) -> int:
        """Delete the envelopes addressed to worlds no longer registered; how many."""
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
        """Delete the envelopes addressed to ``world_id``; how many."""
        with self.db.write() as connection:
            result = connection.execute(
                sa.delete(envelopes).where(envelopes.c.receiver_id == world_id)
            )
        return int(result.rowcount or 0)

    def pending(self) -> dict[str, int]:
        """How many envelopes wait for each receiver (one grouped query)."""
        query = sa.select(envelopes.c.receiver_id, sa.func.count()).group_by(
            envelopes.c.receiver_id
        )
        with self.db.read() as connection:
            return {receiver: int(n) for receiver, n in connection.execute(query).all()}

    def listen(self, world_id: str) -> Listener | None:
        """A wake-up channel for ``world_id``'s envelopes; None: the receiver polls."""
        return None

    def wake(self, world_id: str) -> None:
        """End a wait of ``world_id``'s listener (nothing to do without listeners)."""
