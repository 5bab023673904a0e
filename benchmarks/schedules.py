"""Schedules across two worlds: 100 schedules due every minute for 10 simulated minutes.

Two executor worlds on one PostgreSQL database, each with a manual clock started at
the same time, look for due schedules every 5 simulated seconds; two threads move
their clocks forward in lockstep (both worlds look at the same moment, so they race
for every due time). Expected: exactly 100 x 10 = 1,000 plans, no two for one due
time. Prints the counts and the wall time.

Usage: ``python benchmarks/schedules.py [--schedules 100] [--minutes 10]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from bench_actions import Noop
from run import PG_SERVER

from dynflow import World
from dynflow.clock import ManualClock
from dynflow.persistence.tables import execution_history, execution_plans

DATABASE = "dynflow_bench_schedules"
START = datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)


def fresh() -> str:
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return PG_SERVER + DATABASE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=10)
    options = parser.parse_args()
    url = fresh()
    worlds = [
        World(url, clock=ManualClock(utc_start=START), delayed_interval=5, pool_size=5)
        for _ in range(2)
    ]
    try:
        for n in range(options.schedules):
            worlds[0].schedule(f"s{n:03d}", "* * * * *", Noop)
        steps = options.minutes * 60 // 5
        barrier = threading.Barrier(2)

        def drive(world: World) -> None:
            clock = world.clock
            assert isinstance(clock, ManualClock)
            for _ in range(steps):
                barrier.wait()
                clock.advance(5)

        began = time.perf_counter()
        threads = [threading.Thread(target=drive, args=(w,)) for w in worlds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        driven = time.perf_counter() - began
        expected = options.schedules * options.minutes
        rows: list[Any] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with worlds[0].persistence.db.read() as connection:
                rows = connection.execute(
                    sa.select(execution_plans.c.key, execution_plans.c.state).where(
                        execution_plans.c.key.is_not(None)
                    )
                ).all()
            if len(rows) >= expected and all(r.state == "stopped" for r in rows):
                break
            time.sleep(0.2)
        keys = Counter(r.key for r in rows)
        duplicates = sum(c - 1 for c in keys.values() if c > 1)
        stopped = sum(r.state == "stopped" for r in rows)
        print(f"schedules: {options.schedules}, simulated minutes: {options.minutes}")
        print(f"plans: {len(rows)} (expected {expected}), stopped: {stopped}")
        print(f"distinct due times: {len(keys)}, duplicate plans: {duplicates}")
        with worlds[0].persistence.db.read() as connection:
            ran = connection.execute(
                sa.select(execution_history.c.world_id, sa.func.count())
                .where(execution_history.c.name == "start execution")
                .group_by(execution_history.c.world_id)
            ).all()
        names = {w.id: f"world {i + 1}" for i, w in enumerate(worlds)}
        print("plans started by: " + ", ".join(f"{names.get(w, w)} {n}" for w, n in ran))
        print(f"wall time driving the clocks: {driven:.1f} s")
    finally:
        for world in worlds:
            world.terminate()


if __name__ == "__main__":
    main()
