"""Answers to other worlds, written in the background and in batches.

Whoever answers a request (the executor after a commit, the connector's receiving
thread) only posts the envelope and goes on; one thread writes what was posted,
everything that piled up meanwhile in one ``send_many``. Envelopes keep the order
they were posted in (``Accepted`` before ``Done``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from dynflow.cluster.connector.messages import Envelope

log = logging.getLogger(__name__)

_BATCH = 500  # envelopes per write at most
_RETRY_SECONDS = 0.5


class BatchSender(Protocol):
    def send_many(self, batch: Sequence[Envelope]) -> set[str]: ...


class Outbox:
    def __init__(self, connector: BatchSender, name: str) -> None:
        self._connector = connector
        self._queue: queue.SimpleQueue[Envelope | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def post(self, envelope: Envelope) -> None:
        self._queue.put(envelope)

    def stop(self, timeout: float = 5.0) -> None:
        """Write what was posted (trying for up to ``timeout`` seconds), then stop."""
        if not self._thread.is_alive():
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._stopping.set()  # a write still failing after the timeout gives up
        self._thread.join(_RETRY_SECONDS * 2)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            batch = [] if first is None else [first]
            stop = first is None
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            self._write(batch)

    def _write(self, batch: list[Envelope]) -> None:
        while batch:
            try:
                gone = self._connector.send_many(batch)
            except Exception:
                if self._stopping.is_set():
                    log.error("dropping %d answers: they cannot be written", len(batch))
                    return
                log.exception("cannot write %d answers: trying again", len(batch))
                self._stopping.wait(_RETRY_SECONDS)
                continue
            for world_id in sorted(gone):
                log.info("world %s is gone: its answers are dropped", world_id)
            return
