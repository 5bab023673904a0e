"""Retention on PostgreSQL: deleting ``--plans`` old plans, and W1 while it runs.

Fills a fresh PostgreSQL database with ``--plans`` (100,000) stopped plans that
ended 40 days ago (copies of a real 10-step plan: its row, actions, steps and
history), then measures W1 (500 plans of 10 steps, 4 triggering threads) alone,
and again while ``world.clean(timedelta(days=30))`` deletes the old plans in
another thread; prints the time the clean took and both throughputs.

Usage: ``python benchmarks/retention.py [--plans N]``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from bench_actions import STEPS, TenSteps
from run import fresh_database

from dynflow import World
from dynflow.persistence.tables import actions, execution_history, execution_plans, steps


def fill(world: World, count: int) -> None:
    """``count`` copies of one finished plan, stopped 40 days ago, in a few statements."""
    template = world.trigger(TenSteps).finished.result(60).id
    with world.persistence.db.write() as connection:
        connection.execute(
            sa.text(
                "CREATE TEMP TABLE copies ON COMMIT DROP AS "
                "SELECT gen_random_uuid()::text AS id FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        for table, key in (
            (execution_plans, "id"),
            (actions, "execution_plan_id"),
            (steps, "execution_plan_id"),
            (execution_history, "execution_plan_id"),
        ):
            columns = [
                c.name for c in table.columns if not (table is execution_history and c.name == "id")
            ]
            values = [
                "copies.id"
                if name == key
                else "now() - interval '40 days'"
                if name == "ended_at"
                else f"src.{name}"
                for name in columns
            ]
            connection.execute(
                sa.text(
                    f"INSERT INTO {table.name} ({', '.join(columns)}) "
                    f"SELECT {', '.join(values)} FROM copies CROSS JOIN {table.name} AS src "
                    f"WHERE src.{key} = :template"
                ),
                {"template": template},
            )


def w1(world: World, plans: int = 500, starters: int = 4) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(starters) as pool:
        triggered = list(pool.map(lambda _: world.trigger(TenSteps), range(plans)))
    for t in triggered:
        assert t.finished.result(600).result == "success"
    return plans * STEPS / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plans", type=int, default=100_000)
    args = parser.parse_args()
    url = fresh_database("postgresql", None)  # type: ignore[arg-type]
    result: dict[str, Any] = {"plans": args.plans}
    with World(url, pool_size=5) as world:
        started = time.perf_counter()
        fill(world, args.plans)
        result["fill_seconds"] = round(time.perf_counter() - started, 1)
        world.trigger(TenSteps).finished.result(60)  # warm-up
        result["w1_alone_steps_per_s"] = round(w1(world), 1)

        cleaned: dict[str, Any] = {}

        def clean() -> None:
            began = time.perf_counter()
            cleaned["plans"] = world.clean(timedelta(days=30))
            cleaned["seconds"] = round(time.perf_counter() - began, 1)

        cleaner = threading.Thread(target=clean)
        cleaner.start()
        during = []
        while cleaner.is_alive():
            during.append(w1(world))
        cleaner.join()
        result["clean"] = cleaned
        result["w1_during_clean_steps_per_s"] = [round(x, 1) for x in during]
        result["ratio"] = round(sum(during) / len(during) / result["w1_alone_steps_per_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
