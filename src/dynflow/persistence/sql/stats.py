"""Grouped counts over steps for the console's overview: steps finished per minute,
failed steps per action class."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.execution_plan.states import StepState
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import actions, steps

#: the step states that count as finished
FINISHED = tuple(
    str(s) for s in (StepState.SUCCESS, StepState.SKIPPED, StepState.ERROR, StepState.CANCELLED)
)


def steps_finished_per_minute(db: Database, since: datetime) -> dict[datetime, int]:
    """How many steps ended in each minute (UTC, cut to the minute) since ``since``."""
    minute = db.dialect.minute(steps.c.ended_at).label("minute")
    query = (
        sa.select(minute, sa.func.count())
        .where(steps.c.ended_at >= since, steps.c.state.in_(FINISHED))
        .group_by(minute)
    )
    with db.read() as connection:
        rows = connection.execute(query).all()
    return {_minute(text): int(n) for text, n in rows if text}


def failed_steps_by_action(db: Database, since: datetime, limit: int) -> list[tuple[str, int]]:
    """(action class, failed steps) of the steps that failed since ``since``, most first."""
    count = sa.func.count().label("failed")
    query: sa.Select[Any] = (
        sa.select(steps.c.action_class, count)
        .where(steps.c.state == str(StepState.ERROR), steps.c.ended_at >= since)
        .group_by(steps.c.action_class)
        .order_by(count.desc(), steps.c.action_class)
        .limit(limit)
    )
    with db.read() as connection:
        return [(str(name), int(n)) for name, n in connection.execute(query).all()]


def entry_action_classes(db: Database, plan_ids: Sequence[str]) -> dict[str, str]:
    """The class of each plan's entry action (action 1), by plan id."""
    if not plan_ids:
        return {}
    query = sa.select(actions.c.execution_plan_id, actions.c.action_class).where(
        actions.c.id == 1, actions.c.execution_plan_id.in_(list(plan_ids))
    )
    with db.read() as connection:
        return {str(plan_id): str(name) for plan_id, name in connection.execute(query).all()}


def _minute(text: str) -> datetime:
    return datetime.strptime(str(text)[:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
