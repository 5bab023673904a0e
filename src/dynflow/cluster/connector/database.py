"""The database connector: envelopes travel through the shared database.

The envelope store (``persistence.envelopes``) writes an envelope only for a
registered world; a receiver claims its envelopes (oldest first, deleting
them). Where the store offers a listener (PostgreSQL's NOTIFY) a receiver
wakes up as soon as envelopes arrive, and still polls now and then for one it
missed; elsewhere it polls every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from dynflow.cluster.connector import Receive, ReceiveBatch
from dynflow.cluster.connector.messages import Envelope, decode, encode
from dynflow.errors import NotFound
from dynflow.persistence.port import EnvelopeStore, Listener

log = logging.getLogger(__name__)

_CLAIM = 200  # envelopes claimed per transaction at most
#: seconds a listener waits before polling anyway (a missed wake-up)
_LISTEN_POLL = 1.0


class DatabaseConnector:
    reaches_other_processes = True

    def __init__(
        self, store: EnvelopeStore, *, poll_interval: float = 0.05, durable_claims: bool = True
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        #: False for a world that only reads answers (a client world): an answer read
        #: twice (its claim lost in a database crash) is ignored, so its claims need not
        #: wait for the database's disk (see ``EnvelopeStore.claim``)
        self.durable_claims = durable_claims
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Listener | None = None
        self._world_id: str | None = None

    def start(
        self, world_id: str, receive: Receive, receive_batch: ReceiveBatch | None = None
    ) -> None:
        self._world_id = world_id
        self._listener = self.store.listen(world_id)
        self._thread = threading.Thread(
            target=self._run,
            args=(world_id, receive, receive_batch),
            name=f"dynflow-connector-{world_id[:8]}",
            daemon=True,
        )
        self._thread.start()

    def send(self, envelope: Envelope) -> None:
        """Write the envelope; raises :class:`NotFound` (writing nothing) when its
        receiver is not a registered world: nobody would ever read it."""
        if not self.store.send(envelope.receiver_id, encode(envelope)):
            raise NotFound(f"world {envelope.receiver_id} is not registered (is it running?)")

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        """Write envelopes at once (in order), each only if its receiver is a registered
        world; the receivers that are not (their envelopes are dropped)."""
        return self.store.send_many([(e.receiver_id, encode(e)) for e in batch])

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._listener is not None and self._world_id is not None:
            try:
                self.store.wake(self._world_id)  # ends the listener's wait at once
            except Exception:
                log.debug("could not wake the listener", exc_info=True)
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()

    def drop_orphans(self) -> int:
        """Delete the envelopes addressed to worlds no longer registered (answers that came
        after their world terminated); nothing else would ever read them."""
        return self.store.drop_orphans()

    def drop_for(self, world_id: str) -> int:
        """Delete the envelopes addressed to a world that is gone."""
        return self.store.drop_for(world_id)

    # -- receiving --------------------------------------------------------------------

    def _wait(self) -> None:
        if self._listener is None:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            return
        try:  # the fallback poll also catches a notification that was missed
            self._listener.wait(_LISTEN_POLL)
        except Exception:
            if not self._stopped.is_set():
                log.exception("listening for envelopes failed")
                self._stopped.wait(self.poll_interval)

    def _run(self, world_id: str, receive: Receive, receive_batch: ReceiveBatch | None) -> None:
        while not self._stopped.is_set():
            try:
                rows = self.store.claim(world_id, _CLAIM, self.durable_claims)
            except Exception:
                log.exception("cannot read envelopes")
                self._stopped.wait(1.0)
                continue
            batch = []
            for row_id, data in rows:
                try:
                    batch.append(decode(data))
                except ValueError as exc:
                    log.warning("dropping malformed envelope %s: %s", row_id, exc)
            if receive_batch is not None and len(batch) > 1:
                try:
                    receive_batch(batch)
                except Exception:
                    log.exception("handling %d envelopes failed", len(batch))
            else:
                for envelope in batch:
                    try:
                        receive(envelope)
                    except Exception:
                        log.exception("handling an envelope from %s failed", envelope.sender_id)
            if len(rows) < _CLAIM:
                self._wait()
