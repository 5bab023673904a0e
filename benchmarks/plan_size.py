"""Plan size: the executor's cost per step as plans grow.

One world, one process. A plan of N sequential no-op steps (N = 10, 100, 1,000,
5,000) and one of 1,000 concurrent no-op steps is planned first (not measured),
then executed alone: wall and process CPU time from ``world.execute`` until its
future resolves, divided by N. Small plans run several times in a row so that
each measurement covers at least ``--min-steps`` steps. The configurations are
alternated ``--rounds`` times; medians with their spread [min max].

Usage: ``python benchmarks/plan_size.py [--rounds 3] [--databases sqlite,postgresql]``.
PostgreSQL uses its own database, ``dynflow_bench_plansize``, created afresh.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import Noop

from dynflow import Action, World

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
PG_DATABASE = "dynflow_bench_plansize"


class Steps(Action):
    def plan(self, n: int, concurrent: bool = False) -> None:
        with self.concurrence() if concurrent else self.sequence():
            for _ in range(n):
                self.plan_action(Noop)


def fresh_database(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'plansize-{time.monotonic_ns()}.sqlite3'}"
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
    admin.dispose()
    return PG_SERVER + PG_DATABASE


def measure(world: World, n: int, concurrent: bool, min_steps: int) -> tuple[float, float]:
    """Wall and CPU microseconds per step, over ``ceil(min_steps / n)`` plans."""
    repeat = max(1, -(-min_steps // n))
    plans = [world.plan(Steps, n, concurrent) for _ in range(repeat)]
    wall = cpu = 0.0
    for plan in plans:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        finished = world.execute(plan.id).result(3600)
        wall += time.perf_counter() - wall_start
        cpu += time.process_time() - cpu_start
        assert finished.result == "success", finished
    steps = repeat * n
    return wall / steps * 1e6, cpu / steps * 1e6


def spread(values: list[float]) -> str:
    median = statistics.median(values)
    return f"{median:,.0f} [{min(values):,.0f} {max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="10,100,1000,5000", help="sequential plan sizes")
    parser.add_argument("--concurrent", default="1000", help="concurrent plan sizes")
    parser.add_argument("--min-steps", type=int, default=1000)
    args = parser.parse_args()
    configs = [(int(n), False) for n in args.sizes.split(",") if n]
    configs += [(int(n), True) for n in args.concurrent.split(",") if n]
    results: dict[tuple[str, int, bool], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        for kind in args.databases.split(","):
            with World(fresh_database(kind, Path(tmp_name))) as world:
                world.trigger(Steps, 10).finished.result(60)  # warm-up
                for round_ in range(args.rounds):
                    for n, concurrent in configs:
                        wall, cpu = measure(world, n, concurrent, args.min_steps)
                        results.setdefault((kind, n, concurrent), []).append((wall, cpu))
                        row: dict[str, Any] = {"db": kind, "round": round_, "steps": n}
                        row |= {"concurrent": concurrent, "wall_us": round(wall, 1)}
                        print(json.dumps(row | {"cpu_us": round(cpu, 1)}), flush=True)
    print("\n| database | plan | wall µs/step | CPU µs/step | wall vs 10 steps |")
    print("|---|---|---|---|---|")
    for (kind, n, concurrent), values in results.items():
        walls = [w for w, _ in values]
        base = results.get((kind, 10, False))
        ratio = "-"
        if base is not None:
            ratio = f"{statistics.median(walls) / statistics.median(w for w, _ in base):.2f}x"
        shape = f"{n:,} {'concurrent' if concurrent else 'sequential'}"
        print(
            f"| {kind} | {shape} | {spread(walls)} | {spread([c for _, c in values])} | {ratio} |"
        )


if __name__ == "__main__":
    main()
