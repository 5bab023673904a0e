"""Limits over every world (``dynflow.Limit``): what the store keeps and answers.

One row per (step, key) in ``dynflow_limit_slots``: ``waiting`` in line (first come,
first served: a request's place is the smallest row id it got), ``holding`` while the
step runs, and ``spent`` after a holder of a rate-limited key ended, until its start
leaves the window. ``dynflow_limits`` has one row per key (its limit, and the row
every transaction locks, keys in sorted order, before it counts the key).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

WAITING = "waiting"
HOLDING = "holding"
SPENT = "spent"


@dataclass(frozen=True)
class LimitKey:
    """One formatted key with its limit."""

    key: str
    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None


@dataclass(frozen=True)
class LimitRequest:
    """A step asks for all its keys at once (granted together, or not at all)."""

    execution_plan_id: str
    step_id: int
    keys: tuple[LimitKey, ...]


@dataclass
class LimitOutcome:
    """What one exchange with the store did for the calling world."""

    #: (plan, step) of this world's requests granted now
    granted: list[tuple[str, int]] = field(default_factory=list)
    #: other worlds whose first waiting step may start now: wake them
    wake: set[str] = field(default_factory=set)
    #: key -> when its rate window frees a start (keys this world waits for)
    due: dict[str, datetime] = field(default_factory=dict)
    #: a pass of this world's own may grant more (asked again at once)
    more: bool = False
    #: this world is no longer registered under the registration given: nothing written
    fenced: bool = False


@dataclass(frozen=True)
class LimitEntry:
    """A holder or a waiter, as ``persistence.find_limits()`` shows it."""

    key: str
    #: ``holding`` or ``waiting``
    state: str
    execution_plan_id: str
    step_id: int
    world_id: str
    requested_at: datetime
    granted_at: datetime | None
    concurrency: int | None
    rate: int | None
    per: float | None
    #: a waiter's place in the key's line (1: next), None for a holder
    position: int | None = None


class LimitStore(Protocol):
    """The store of limit holders and waiters, shared by every world."""

    def exchange(
        self,
        world_id: str,
        registration: str,
        now: datetime,
        *,
        acquire: Sequence[LimitRequest] = (),
        release: Collection[tuple[str, int]] = (),
        drop_plans: Collection[str] = (),
        retry: Collection[str] = (),
    ) -> LimitOutcome:
        """In one transaction: release (steps, whole plans of this world), queue the new
        requests, then grant this world's waiters that may start, first come first
        served, on the keys touched and on ``retry``."""
        ...

    def drop_world(self, world_id: str) -> set[str]:
        """Release everything ``world_id`` holds or waits for (it is dead); the worlds
        waiting on the keys it had (to wake)."""
        ...

    def find(
        self, *, key: str | None = None, execution_plan_id: str | None = None
    ) -> list[LimitEntry]:
        """Holders and waiters, by key, holders first, waiters in their order."""
        ...
