"""Schedules: recurring plans by a standard 5-field cron expression.

``world.schedule(name, cron, ActionClass, *args, timezone="UTC", overlap="skip",
catch_up=False, **kwargs)`` stores the schedule; every executor world looks for due
schedules every ``delayed_interval`` seconds on the world's clock. For each due
time it triggers the plan with the idempotency key ``name@due_time`` (so two worlds
handling one due time get one plan) and moves the schedule's next due time on with
a compare-and-set. Cron times are computed in the schedule's time zone by
``cronsim``, as cron does across a DST change: a time that does not exist that day
(02:30 when 02:00 jumps to 03:00) runs when the clock jumps past it, and a time that
happens twice runs once, the first time.

``overlap="skip"`` starts no plan while the schedule's previous plan has not
stopped (that due time is passed over); ``"allow"`` does. After downtime,
``catch_up=False`` triggers only the latest missed due time, ``True`` every one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from dynflow.action import registry
from dynflow.action.base import Action
from dynflow.errors import ConfigurationError, DynflowError, NotFound
from dynflow.execution_plan.states import PlanState
from dynflow.persistence.schedules import Schedule
from dynflow.serialization import to_json_value

if TYPE_CHECKING:
    from dynflow.clock import Timer
    from dynflow.services.ports import Ports

__all__ = ["Schedule", "Schedules", "next_times"]

log = logging.getLogger(__name__)

OVERLAPS = ("skip", "allow")
#: a schedule's name goes into its plans' keys (``name@due_time``, at most 255)
MAX_NAME = 200
#: due schedules handled per look, and due times one schedule triggers per look
BATCH = 100
MAX_CATCH_UP = 1000

#: (idempotency key, action class, args, kwargs) -> the plan's id
Trigger = Callable[[str, type[Action], tuple[Any, ...], dict[str, Any]], str]


def next_times(cron: str, timezone: str, after: datetime, count: int = 1) -> list[datetime]:
    """The ``count`` due times of ``cron`` (in ``timezone``) after ``after``, in UTC."""
    zone = _zone(timezone)
    times = CronSim(cron, after.astimezone(zone))
    return [next(times).astimezone(UTC) for _ in range(count)]


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {timezone!r}: use an IANA name such as 'UTC' or 'Europe/Prague'"
        ) from None


def _check_cron(cron: str) -> None:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ConfigurationError(
            f"bad cron expression {cron!r}: use the 5 fields minute hour day-of-month "
            "month day-of-week, e.g. '*/15 * * * *'"
        )
    try:
        CronSim(cron, datetime.now(UTC))
    except CronSimError as exc:
        raise ConfigurationError(f"bad cron expression {cron!r}: {exc}") from None


class Schedules:
    """A world's view of the schedules; an executor world also triggers the due ones."""

    def __init__(self, ports: Ports, trigger: Trigger, *, runs: bool) -> None:
        self.store = ports.persistence.schedules
        self.persistence = ports.persistence
        self.clock = ports.clock
        self.interval = ports.config.delayed_interval
        self.trigger = trigger
        self.runs = runs
        self._lock = threading.RLock()  # one look at a time; stop() waits for it
        self._stopped = False
        self._timer: Timer | None = None

    def start(self) -> None:
        if self.runs:
            self._timer = self.clock.schedule(0, self._tick)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()

    # -- the public calls -------------------------------------------------------------

    def schedule(
        self,
        name: str,
        cron: str,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        timezone: str = "UTC",
        overlap: str = "skip",
        catch_up: bool = False,
    ) -> Schedule:
        """Create or replace the schedule ``name``; nothing is stored on bad input."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ConfigurationError(
                f"a schedule's name must be 1 to {MAX_NAME} characters, got {name!r}"
            )
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise ConfigurationError(f"expected an Action subclass, got {action_class!r}")
        if overlap not in OVERLAPS:
            raise ConfigurationError(f"overlap must be 'skip' or 'allow', got {overlap!r}")
        _check_cron(cron)
        now = self.clock.utcnow()
        where = f"schedule {name!r} argument"
        schedule = Schedule(
            name=name,
            cron=cron,
            action_class=action_class.class_name(),
            timezone=timezone,
            overlap=overlap,
            catch_up=bool(catch_up),
            next_run_at=next_times(cron, timezone, now)[0],
            args=[to_json_value(v, f"{where} {i}") for i, v in enumerate(args)],
            kwargs={k: to_json_value(v, f"{where} {k!r}") for k, v in kwargs.items()},
            created_at=now,
        )
        self.store.save(schedule)
        return schedule

    def all(self) -> list[Schedule]:
        return self.store.all()

    def get(self, name: str) -> Schedule:
        found = self.store.get(name)
        if found is None:
            raise NotFound(f"no schedule {name!r}")
        return found

    def unschedule(self, name: str) -> bool:
        """Delete the schedule; False if there was none. Its plans stay."""
        return self.store.delete(name)

    def pause(self, name: str) -> Schedule:
        if not self.store.set_paused(name, True, None):
            raise NotFound(f"no schedule {name!r}")
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Resume a paused schedule from now: the due times it was paused over are
        not made up."""
        schedule = self.get(name)
        upcoming = next_times(schedule.cron, schedule.timezone, self.clock.utcnow())[0]
        self.store.set_paused(name, False, upcoming)
        return self.get(name)

    # -- triggering what is due -------------------------------------------------------

    def check(self) -> int:
        """Trigger the plans of the schedules due by now; how many this world started."""
        with self._lock:
            if self._stopped or not self.runs:
                return 0
            now = self.clock.utcnow()
            started = 0
            for schedule in self.store.due(now, BATCH):
                if self._stopped:
                    break
                try:
                    started += self._run(schedule, now)
                except DynflowError as exc:  # e.g. the database: try again next time
                    log.error("cannot trigger schedule %s: %s", schedule.name, exc)
            return started

    def _tick(self) -> None:
        try:
            self.check()
        except Exception:
            log.exception("looking for due schedules failed")
        with self._lock:
            if not self._stopped:
                self._timer = self.clock.schedule(self.interval, self._tick)

    def _run(self, schedule: Schedule, now: datetime) -> int:
        assert schedule.next_run_at is not None
        due = [schedule.next_run_at]
        while len(due) < MAX_CATCH_UP:
            following = next_times(schedule.cron, schedule.timezone, due[-1])[0]
            if following > now:
                break
            due.append(following)
        if not schedule.catch_up:
            due = due[-1:]
        try:
            action_class = registry.lookup(schedule.action_class)
        except DynflowError as exc:
            log.error(
                "schedule %s cannot trigger %s: %s", schedule.name, schedule.action_class, exc
            )
            return 0
        last_plan, last_due, started = schedule.last_plan_id, None, 0
        for when in due:
            if schedule.overlap == "skip" and self._running(last_plan):
                log.info(
                    "schedule %s: due time %s passed over, plan %s still runs",
                    schedule.name,
                    when.isoformat(),
                    last_plan,
                )
                continue
            key = f"{schedule.name}@{when.isoformat()}"
            last_plan = self.trigger(key, action_class, tuple(schedule.args), schedule.kwargs)
            last_due, started = when, started + 1
        upcoming = next_times(schedule.cron, schedule.timezone, max(due[-1], now))[0]
        if not self.store.advance(
            schedule.name, schedule.next_run_at, upcoming, last_due, last_plan if last_due else None
        ):
            log.debug("schedule %s was moved on by another world", schedule.name)
        return started

    def _running(self, plan_id: str | None) -> bool:
        if plan_id is None:
            return False
        try:
            plan = self.persistence.load_execution_plan(plan_id)
        except NotFound:  # deleted (retention): nothing runs
            return False
        return plan.state is not PlanState.STOPPED
