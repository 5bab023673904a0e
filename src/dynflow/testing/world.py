"""``InThreadWorld``: executes plans in the calling thread, with a manual clock."""

from __future__ import annotations

from typing import Any

from dynflow.clock import ManualClock
from dynflow.executor.inline import InlineExecutor
from dynflow.world import World


class InThreadWorld(World):
    """A world for deterministic tests.

    ``trigger`` returns with the plan already stopped or paused: every step ran
    in the calling thread, in a fixed order. Time moves only with
    ``world.clock.advance(seconds)``. Defaults to an in-memory SQLite database.
    """

    clock: ManualClock

    def __init__(self, database_url: str | None = "sqlite://", **options: Any) -> None:
        options.setdefault("clock", ManualClock())
        options.setdefault("auto_execute", False)
        if options.get("executor", True) is True:
            options["executor"] = InlineExecutor
        super().__init__(database_url, **options)
