"""The schedule store over the shared database (see ``persistence.schedules``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dynflow.persistence.schedules import Schedule
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import execution_plans, schedules


class SqlScheduleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, schedule: Schedule) -> None:
        row = _row(schedule)
        with self.db.write() as connection:  # replace: one transaction, any database
            connection.execute(sa.delete(schedules).where(schedules.c.name == schedule.name))
            connection.execute(sa.insert(schedules), [row])

    def get(self, name: str) -> Schedule | None:
        with self.db.read() as connection:
            row = connection.execute(sa.select(schedules).where(schedules.c.name == name)).first()
        return None if row is None else _schedule(row._mapping)

    def all(self) -> list[Schedule]:
        with self.db.read() as connection:
            rows = connection.execute(sa.select(schedules).order_by(schedules.c.name)).all()
        return [_schedule(row._mapping) for row in rows]

    def due(self, now: datetime, limit: int) -> list[Schedule]:
        query = (
            sa.select(schedules)
            .where(schedules.c.paused == sa.false(), schedules.c.next_run_at <= now)
            .order_by(schedules.c.next_run_at, schedules.c.name)
            .limit(limit)
        )
        with self.db.read() as connection:
            rows = connection.execute(query).all()
        return [_schedule(row._mapping) for row in rows]

    def advance(
        self,
        name: str,
        expected: datetime,
        next_run_at: datetime,
        last_due_at: datetime | None,
        last_plan_id: str | None,
    ) -> bool:
        values: dict[str, Any] = {"next_run_at": next_run_at}
        if last_plan_id is not None:
            values.update(last_due_at=last_due_at, last_plan_id=last_plan_id)
        with self.db.write() as connection:
            changed = connection.execute(
                sa.update(schedules)
                .where(schedules.c.name == name, schedules.c.next_run_at == expected)
                .values(**values)
            ).rowcount
        return bool(changed)

    def set_paused(self, name: str, paused: bool, next_run_at: datetime | None) -> bool:
        values: dict[str, Any] = {"paused": paused}
        if next_run_at is not None:
            values["next_run_at"] = next_run_at
        with self.db.write() as connection:
            changed = connection.execute(
                sa.update(schedules).where(schedules.c.name == name).values(**values)
            ).rowcount
        return bool(changed)

    def delete(self, name: str) -> bool:
        with self.db.write() as connection:
            deleted = connection.execute(
                sa.delete(schedules).where(schedules.c.name == name)
            ).rowcount
        return bool(deleted)

    def recent_plan_ids(self, name: str, limit: int) -> list[str]:
        prefix = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "@"
        query = (
            sa.select(execution_plans.c.id)
            .where(execution_plans.c.key.like(prefix + "%", escape="\\"))
            .order_by(execution_plans.c.key.desc())
            .limit(limit)
        )
        with self.db.read() as connection:
            return list(connection.execute(query).scalars())


def _row(schedule: Schedule) -> dict[str, Any]:
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "action_class": schedule.action_class,
        "args": {"args": schedule.args, "kwargs": schedule.kwargs},
        "overlap": schedule.overlap,
        "catch_up": schedule.catch_up,
        "paused": schedule.paused,
        "next_run_at": schedule.next_run_at,
        "last_due_at": schedule.last_due_at,
        "last_plan_id": schedule.last_plan_id,
        "created_at": schedule.created_at,
    }


def _schedule(row: Any) -> Schedule:
    arguments = row["args"] or {}
    return Schedule(
        name=row["name"],
        cron=row["cron"],
        action_class=row["action_class"],
        timezone=row["timezone"],
        overlap=row["overlap"],
        catch_up=bool(row["catch_up"]),
        paused=bool(row["paused"]),
        next_run_at=row["next_run_at"],
        last_due_at=row["last_due_at"],
        last_plan_id=row["last_plan_id"],
        args=list(arguments.get("args", [])),
        kwargs=dict(arguments.get("kwargs", {})),
        created_at=row["created_at"],
    )
