"""The direct connector: worlds of one process hand envelopes to each other in memory."""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Sequence

from dynflow.cluster.connector import Receive, ReceiveBatch
from dynflow.cluster.connector.messages import Envelope
from dynflow.errors import NotFound

log = logging.getLogger(__name__)

#: the worlds of this process that use the direct connector, by world id
_LOCAL: weakref.WeakValueDictionary[str, DirectConnector] = weakref.WeakValueDictionary()
_LOCAL_LOCK = threading.Lock()


class DirectConnector:
    reaches_other_processes = False

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._world_id: str | None = None

    def start(
        self, world_id: str, receive: Receive, receive_batch: ReceiveBatch | None = None
    ) -> None:
        """Envelopes arrive one at a time here: ``receive_batch`` is not used."""
        self._world_id = world_id
        with _LOCAL_LOCK:
            _LOCAL[world_id] = self
        self._thread = threading.Thread(
            target=self._run, args=(receive,), name=f"dynflow-direct-{world_id[:8]}", daemon=True
        )
        self._thread.start()

    def send(self, envelope: Envelope) -> None:
        with _LOCAL_LOCK:
            target = _LOCAL.get(envelope.receiver_id)
        if target is None:
            raise NotFound(
                f"world {envelope.receiver_id} is not in this process: use the database "
                "connector to reach worlds in other processes"
            )
        target._inbox.put(envelope)

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        """Hand over envelopes in order; the receivers not in this process (their
        envelopes are dropped)."""
        gone = set()
        for envelope in batch:
            try:
                self.send(envelope)
            except NotFound:
                gone.add(envelope.receiver_id)
        return gone

    def drop_for(self, world_id: str) -> int:
        return 0  # nothing outlives the process that would read it

    def drop_orphans(self) -> int:
        return 0

    def stop(self) -> None:
        with _LOCAL_LOCK:
            if self._world_id is not None and _LOCAL.get(self._world_id) is self:
                del _LOCAL[self._world_id]
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(5)

    def _run(self, receive: Receive) -> None:
        while (envelope := self._inbox.get()) is not None:
            try:
                receive(envelope)
            except Exception:
                log.exception("handling %r failed", envelope)
