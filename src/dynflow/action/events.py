"""Events the engine itself sends to steps. They are JSON, like every event."""

from __future__ import annotations

from typing import Any

EVENT_KEY = "__dynflow_event__"

#: sent by the clock to a polling action when it is time to poll again
POLL: dict[str, Any] = {EVENT_KEY: "poll"}
#: sent by ``world.cancel`` to the running or suspended steps of cancellable actions
CANCEL: dict[str, Any] = {EVENT_KEY: "cancel"}


def is_engine_event(event: Any, kind: dict[str, Any]) -> bool:
    return isinstance(event, dict) and event.get(EVENT_KEY) == kind[EVENT_KEY]
