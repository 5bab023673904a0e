"""Clocks: when timed things (delayed events, polls, timeouts) happen.

:class:`ThreadClock` fires callbacks from a timer thread; :class:`ManualClock`
fires them only when a test calls :meth:`ManualClock.advance`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dynflow.errors import ConfigurationError


class Clock(Protocol):
    """What the engine asks of a clock: monotonic and wall time, and timers."""

    def now(self) -> float: ...

    def utcnow(self) -> datetime: ...

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer: ...

    def stop(self) -> None: ...


@dataclass(order=True)
class _Timer:
    at: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Timer:
    """A handle to cancel a scheduled callback."""

    def __init__(self, timer: _Timer) -> None:
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancelled = True


class ManualClock:
    """A clock that moves only when told to: deterministic tests of timed behaviour.

    ``utcnow()`` is ``utc_start`` (default: the real time at creation) plus the time
    advanced since; clocks of several worlds given one ``utc_start`` agree.
    """

    def __init__(self, start: float = 0.0, *, utc_start: datetime | None = None) -> None:
        if utc_start is not None and utc_start.tzinfo is None:
            raise ConfigurationError("utc_start must be an aware datetime, e.g. datetime.now(UTC)")
        self._now = start
        self._start = start
        self._utc_start = utc_start or datetime.now(UTC)
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds on this clock: ``start`` plus the time advanced so far."""
        return self._now

    def utcnow(self) -> datetime:
        """The wall-clock time: ``utc_start`` plus the time advanced so far."""
        return self._utc_start + timedelta(seconds=self._now - self._start)

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _Timer(self._now + max(delay, 0.0), next(self._seq), callback)
        with self._lock:
            heapq.heappush(self._timers, timer)
        return Timer(timer)

    def pending(self) -> int:
        """How many scheduled callbacks have not fired (nor been cancelled) yet."""
        return sum(not t.cancelled for t in self._timers)

    def advance(self, seconds: float) -> int:
        """Move time forward, firing due callbacks in time order; returns how many fired."""
        target = self._now + seconds
        fired = 0
        while True:
            with self._lock:
                if not self._timers or self._timers[0].at > target:
                    break
                timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.at)
            timer.callback()
            fired += 1
        self._now = target
        return fired

    def stop(self) -> None:
        with self._lock:
            self._timers.clear()


class ThreadClock:
    """Real time: callbacks run on one timer thread, in time order."""

    def __init__(self, name: str = "dynflow-clock") -> None:
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.monotonic()

    def utcnow(self) -> datetime:
        """The real wall-clock time, aware, in UTC."""
        return datetime.now(UTC)

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _Timer(time.monotonic() + max(delay, 0.0), next(self._seq), callback)
        with self._wake:
            heapq.heappush(self._timers, timer)
            self._wake.notify()
        return Timer(timer)

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                    not self._timers or self._timers[0].at > time.monotonic()
                ):
                    timeout = self._timers[0].at - time.monotonic() if self._timers else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                try:
                    timer.callback()
                except Exception:  # a failing callback must not stop the clock
                    import logging

                    logging.getLogger(__name__).exception("clock callback failed")


def aware_utc(value: datetime, name: str, example: str) -> datetime:
    """``value`` in UTC; a naive datetime is refused: its time zone would be a guess."""
    if value.tzinfo is None:
        raise ConfigurationError(
            f"{name} {value.isoformat()} is a naive datetime: pass an aware one, {example}"
        )
    return value.astimezone(UTC)
