"""Live updates of a plan page: a server-sent event stream of its changes.

One :class:`Watcher` per console polls for every open stream at once: every
:data:`POLL_SECONDS` it reads the plans being watched (their rows and steps, a few
queries whatever the number of streams) and wakes the streams whose plan changed.
An open stream costs nothing more while its plan does not change: it sleeps, and
sends a keep-alive comment every :data:`KEEPALIVE_SECONDS` (which keeps proxies
from closing it).

A stream sends what changed since its last event: the plan's state, result and
progress and the states of the steps that changed. The first event carries the full
state (so a reconnecting browser is up to date at once, whatever it missed); the
stream ends with an ``end`` event when the plan is no longer live (stopped, or
paused until someone resumes it), and without one if the plan is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from dynflow.execution_plan.model import ExecutionPlan

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
#: send a comment line when nothing changed for this long (keeps proxies open)
KEEPALIVE_SECONDS = 15.0
#: how long a browser waits before reconnecting (milliseconds)
RETRY_MS = 2000
LIVE_STATES = frozenset({"pending", "scheduled", "planning", "planned", "running"})

Snapshot = dict[str, Any]
#: plan ids -> those plans that exist, with their steps
LoadMany = Callable[[Sequence[str]], dict[str, ExecutionPlan]]


def snapshot(plan: ExecutionPlan) -> Snapshot:
    """What the page shows live: plan state, result, progress and each step's state."""
    return {
        "state": str(plan.state),
        "result": str(plan.result),
        "progress": round(plan.progress, 4),
        "steps": {str(s.id): str(s.state) for s in plan.steps.values()},
    }


def changes(before: Snapshot, after: Snapshot) -> Snapshot:
    """The fields of ``after`` that differ from ``before`` (steps: only changed ones)."""
    found = {k: v for k, v in after.items() if k != "steps" and before.get(k) != v}
    old_steps = before.get("steps", {})
    steps = {k: v for k, v in after["steps"].items() if old_steps.get(k) != v}
    if steps:
        found["steps"] = steps
    return found


def event(name: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Hub:
    """The watched plans of one event loop and the task polling them."""

    def __init__(self, load: LoadMany, poll_seconds: float) -> None:
        self.load = load
        self.poll_seconds = poll_seconds
        #: plan id -> open streams on it
        self.streams: dict[str, int] = {}
        #: plan id -> its latest snapshot (None: deleted) and how many changes were seen
        self.latest: dict[str, tuple[int, Snapshot | None]] = {}
        self.wakers: dict[str, asyncio.Event] = {}
        self.task: asyncio.Task[None] | None = None
        #: polls done (each: one read of every watched plan)
        self.polls = 0

    def join(self, plan_id: str, first: Snapshot) -> int:
        """Watch ``plan_id`` (read as ``first``); the change count to wait beyond."""
        self.streams[plan_id] = self.streams.get(plan_id, 0) + 1
        seen, latest = self.latest.get(plan_id, (0, None))
        if latest != first:
            seen += 1
            self.latest[plan_id] = (seen, first)
            waker = self.wakers.pop(plan_id, None)
            if waker is not None:  # other streams on it: newer than what they saw
                waker.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._poll())
        return seen

    def leave(self, plan_id: str) -> None:
        left = self.streams.get(plan_id, 0) - 1
        if left > 0:
            self.streams[plan_id] = left
            return
        self.streams.pop(plan_id, None)
        self.latest.pop(plan_id, None)
        self.wakers.pop(plan_id, None)

    async def wait(self, plan_id: str, seen: int, timeout: float) -> tuple[int, Snapshot | None]:
        """The plan's change count and snapshot once it changed past ``seen``, or after
        ``timeout`` seconds (unchanged then)."""
        count, latest = self.latest.get(plan_id, (seen, None))
        if count == seen:
            waker = self.wakers.setdefault(plan_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout)
            count, latest = self.latest.get(plan_id, (seen, None))
        return count, latest

    async def _poll(self) -> None:
        while self.streams:
            await asyncio.sleep(self.poll_seconds)
            watched = list(self.streams)
            if not watched:
                break
            try:
                found = await run_in_threadpool(self.load, watched)
            except Exception:  # the database is away: the streams wait for the next poll
                log.exception("reading the watched plans failed")
                continue
            self.polls += 1
            for plan_id in watched:
                if plan_id not in self.streams:
                    continue
                plan = found.get(plan_id)
                current = None if plan is None else snapshot(plan)
                count, latest = self.latest.get(plan_id, (0, None))
                if current != latest:
                    self.latest[plan_id] = (count + 1, current)
                    waker = self.wakers.pop(plan_id, None)
                    if waker is not None:
                        waker.set()


class Watcher:
    """Polls the plans of every open stream of a console together (see the module)."""

    def __init__(
        self,
        load: LoadMany,
        poll_seconds: float = POLL_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self.load = load
        self.poll_seconds = poll_seconds
        self.keepalive_seconds = keepalive_seconds
        #: one hub per event loop (a test client runs its own)
        self._hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hub] = (
            weakref.WeakKeyDictionary()
        )

    def hub(self) -> _Hub:
        loop = asyncio.get_running_loop()
        found = self._hubs.get(loop)
        if found is None:
            found = self._hubs[loop] = _Hub(self.load, self.poll_seconds)
        return found

    def first(self, plan_id: str) -> Snapshot | None:
        """The plan's snapshot now (None: no such plan), read in the caller's thread."""
        plan = self.load([plan_id]).get(plan_id)
        return None if plan is None else snapshot(plan)

    async def events(self, plan_id: str, first: Snapshot) -> AsyncIterator[str]:
        """The stream of the plan's changes from ``first``, until it is not live."""
        yield f"retry: {RETRY_MS}\n\n"
        sent = 1
        yield event("state", {"full": True, **first}, sent)
        if first["state"] not in LIVE_STATES:
            yield event("end", {"state": first["state"], "result": first["result"]})
            return
        hub = self.hub()
        seen = hub.join(plan_id, first)
        previous = first
        try:
            while True:
                count, current = await hub.wait(plan_id, seen, self.keepalive_seconds)
                if count == seen:
                    yield ": keep-alive\n\n"
                    continue
                seen = count
                if current is None:  # deleted
                    return
                payload = changes(previous, current)
                previous = current
                if payload:
                    sent += 1
                    yield event("state", payload, sent)
                if current["state"] not in LIVE_STATES:
                    yield event("end", {"state": current["state"], "result": current["result"]})
                    return
        finally:
            hub.leave(plan_id)
