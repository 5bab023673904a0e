"""Connectors carry envelopes between worlds: ``direct`` (in-process) or ``database``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dynflow.cluster.connector.messages import Envelope

Receive = Callable[[Envelope], None]
#: envelopes read together, in order
ReceiveBatch = Callable[[Sequence[Envelope]], None]


class Connector(Protocol):
    #: True when envelopes reach worlds in other processes (and those worlds can be
    #: pinged); False for an in-process connector
    reaches_other_processes: bool

    def start(
        self, world_id: str, receive: Receive, receive_batch: ReceiveBatch | None = None
    ) -> None:
        """Start delivering envelopes addressed to ``world_id`` to ``receive``; a
        connector that reads several at once hands them to ``receive_batch``, if given."""
        ...

    def send(self, envelope: Envelope) -> None:
        """Hand over an envelope; raises if it certainly cannot be delivered
        (:class:`~dynflow.errors.NotFound` when its receiver is not a registered world)."""
        ...

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        """Hand over envelopes in order, at once; the receivers that are not registered
        worlds (their envelopes are dropped)."""
        ...

    def drop_for(self, world_id: str) -> int:
        """Delete the envelopes waiting for ``world_id`` (a dead world); how many."""
        ...

    def drop_orphans(self) -> int:
        """Delete the envelopes of worlds that are no longer registered; how many."""
        ...

    def stop(self) -> None: ...
