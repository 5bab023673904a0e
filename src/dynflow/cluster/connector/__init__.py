"""Connectors carry envelopes between worlds: ``direct`` (in-process) or ``database``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from dynflow.cluster.connector.messages import Envelope

Receive = Callable[[Envelope], None]


class Connector(Protocol):
    def start(self, world_id: str, receive: Receive) -> None:
        """Start delivering envelopes addressed to ``world_id`` to ``receive``."""
        ...

    def send(self, envelope: Envelope) -> None:
        """Hand over an envelope; raises if it certainly cannot be delivered
        (:class:`~dynflow.errors.NotFound` when its receiver is not a registered world)."""
        ...

    def send_many(self, batch: Sequence[Envelope]) -> set[str]:
        """Hand over envelopes in order, at once; the receivers that are not registered
        worlds (their envelopes are dropped)."""
        ...

    def stop(self) -> None: ...
