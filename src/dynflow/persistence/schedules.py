"""Schedules: recurring plans by a cron expression, and their store.

One row per schedule (its name is the key). ``next_run_at`` is the next due time not
yet handled; the world that handles a due time moves it on with a compare-and-set,
and the plans it triggers carry the key ``name@due_time``, so a due time gives at
most one plan whichever worlds handle it, and however often.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Schedule:
    """A recurring plan: what to trigger, when, and what happened last."""

    name: str
    cron: str
    action_class: str
    timezone: str = "UTC"
    overlap: str = "skip"
    catch_up: bool = False
    paused: bool = False
    #: the next due time not handled yet (aware UTC)
    next_run_at: datetime | None = None
    #: the last due time a plan was triggered for, and that plan
    last_due_at: datetime | None = None
    last_plan_id: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


class ScheduleStore(Protocol):
    """The schedule aggregate."""

    def save(self, schedule: Schedule) -> None:
        """Create the schedule, or replace the one of the same name."""
        ...

    def get(self, name: str) -> Schedule | None: ...

    def all(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    def due(self, now: datetime, limit: int) -> list[Schedule]:
        """Schedules not paused whose ``next_run_at`` is at or before ``now``, the
        earliest first."""
        ...

    def advance(
        self,
        name: str,
        expected: datetime,
        next_run_at: datetime,
        last_due_at: datetime | None,
        last_plan_id: str | None,
    ) -> bool:
        """Move ``next_run_at`` on from ``expected`` (and record the last plan when
        given); False when another world did it first."""
        ...

    def set_paused(self, name: str, paused: bool, next_run_at: datetime | None) -> bool:
        """Pause or resume (with the next due time from now); False if unknown."""
        ...

    def delete(self, name: str) -> bool: ...

    def recent_plan_ids(self, name: str, limit: int) -> list[str]:
        """The ids of the schedule's latest plans (by due time), the newest first."""
        ...
