"""Live updates of a plan page: a server-sent event stream of its changes.

Each open stream reads the plan every :data:`POLL_SECONDS` and sends what changed since
its last event: the plan's state, result and progress and the states of the steps
that changed. The first event carries the full state (so a reconnecting browser is
up to date at once, whatever it missed); the stream ends with an ``end`` event when
the plan is no longer live (stopped, or paused until someone resumes it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from dynflow.execution_plan.model import ExecutionPlan

POLL_SECONDS = 0.5
#: send a comment line when nothing changed for this many polls (keeps proxies open)
KEEPALIVE_POLLS = 30
#: how long a browser waits before reconnecting (milliseconds)
RETRY_MS = 2000
LIVE_STATES = frozenset({"pending", "scheduled", "planning", "planned", "running"})


def snapshot(plan: ExecutionPlan) -> dict[str, Any]:
    """What the page shows live: plan state, result, progress and each step's state."""
    return {
        "state": str(plan.state),
        "result": str(plan.result),
        "progress": round(plan.progress, 4),
        "steps": {str(s.id): str(s.state) for s in plan.steps.values()},
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
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


async def events(
    load: Callable[[], ExecutionPlan], poll_seconds: float = POLL_SECONDS
) -> AsyncIterator[str]:
    """The stream of ``load()``'s changes, until the plan is not live any more."""
    yield f"retry: {RETRY_MS}\n\n"
    previous: dict[str, Any] | None = None
    sent = 0
    quiet = 0
    while True:
        plan = await run_in_threadpool(load)
        current = snapshot(plan)
        if previous is None:
            payload: dict[str, Any] = {"full": True, **current}
        else:
            payload = changes(previous, current)
        previous = current
        if payload:
            sent += 1
            quiet = 0
            yield event("state", payload, sent)
        else:
            quiet += 1
            if quiet >= KEEPALIVE_POLLS:
                quiet = 0
                yield ": keep-alive\n\n"
        if current["state"] not in LIVE_STATES:
            yield event("end", {"state": current["state"], "result": current["result"]})
            return
        await anyio.sleep(poll_seconds)
