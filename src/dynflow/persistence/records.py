"""Kinds of coordinator records, shared by the coordinator and the stores that write them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

#: a registered world (id: the world's id)
WORLD = "world"
#: held by the world executing a plan (id: the plan's id)
EXECUTION_LOCK = "execution_lock"
#: held by the world that made a plan with ``world.plan()`` until it is executed: while
#: that world lives, no starting executor picks the plan up (it waits, e.g. for review)
PLANNED_LOCK = "planned_plan"
#: taken by the one world that invalidates a dead world (id: the dead world's id)
INVALIDATION_LOCK = "world_invalidation"


class TakeOver(NamedTuple):
    """An execution request an executor world takes over: the plan's execution lock moves
    from ``from_owner`` (the requesting world) with ``lock_data``; ``reply`` (receiver id,
    envelope text) is written with the move where the adapter can."""

    plan_id: str
    from_owner: str
    lock_data: Mapping[str, Any]
    reply: tuple[str, str] | None = None
