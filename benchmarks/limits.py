"""Limits (``dynflow.Limit``): what they cost and how fast a freed slot is used.

1. W1 (``--plans`` plans of 10 sequential no-op steps) plain, and with every step
   under ``Limit("k{n}", concurrency=1)`` over 100 distinct keys, in the same run,
   on SQLite and PostgreSQL -> steps per second and the ratio.
2. ``--waiters`` steps waiting on one limit (PostgreSQL): the time to queue them,
   the process's extra RSS, its CPU per second while they wait, and the time to
   terminate the world with them. ``--baseline`` measures only the same number of
   plans whose one step suspends without limits (the RSS of the plans themselves).
3. Hand-over latency (PostgreSQL): ``--samples`` one-step plans on one key with
   concurrency 1, all waiting; the time from one step's end to the next one's
   start -> p50/p99 in milliseconds.

Usage: ``python benchmarks/limits.py [--plans N] [--waiters N] [--samples N]
[--seconds S] [--skip-w1] [--baseline]``.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import STEPS, Parked, Stamped, TenLimited, TenSteps
from run import PG_SERVER

from dynflow import World
from dynflow.persistence.tables import limit_slots


def fresh_database(kind: str, tmp: Path) -> str:
    """A new SQLite file, or a PostgreSQL database of this script's own."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'limits-{time.monotonic_ns()}.sqlite3'}"
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text('DROP DATABASE IF EXISTS "dynflow_bench_limits" WITH (FORCE)'))
        connection.execute(sa.text('CREATE DATABASE "dynflow_bench_limits"'))
    admin.dispose()
    return PG_SERVER + "dynflow_bench_limits"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def w1(url: str, plans: int, limited: bool) -> float:
    with World(url, pool_size=5) as world:
        trigger = (
            (lambda n: world.trigger(TenLimited, n % 100))
            if limited
            else (lambda n: world.trigger(TenSteps))
        )
        trigger(0).finished.result(60)  # warm-up
        started = time.perf_counter()
        triggered = [trigger(n) for n in range(plans)]
        for t in triggered:
            assert t.finished.result(600).result == "success"
        return plans * STEPS / (time.perf_counter() - started)


def waiting(world: World, key: str) -> int:
    with world.persistence.db.read() as connection:
        query = sa.select(sa.func.count()).where(
            limit_slots.c.key == key, limit_slots.c.state == "waiting"
        )
        return int(connection.execute(query).scalar_one())


def many_waiters(url: str, count: int, seconds: float, limited: bool = True) -> dict[str, Any]:
    """``count`` plans whose step waits for the key "one" (held by another step); or,
    not ``limited``, whose step suspends without a limit."""
    with World(url, pool_size=5, terminate_timeout=1800) as world:
        holder = world.trigger(Stamped, "one", True)
        while not any(
            s.state == "suspended"
            for s in world.persistence.load_execution_plan(holder.execution_plan_id).steps.values()
        ):
            time.sleep(0.05)
        Parked.parked.clear()
        before = rss_mb()
        started = time.perf_counter()
        for _ in range(count):
            world.trigger(Stamped if limited else Parked, "one")
        while (waiting(world, "one") if limited else len(Parked.parked)) < count:
            time.sleep(0.5)
        queued = time.perf_counter() - started
        label = "waiting" if limited else "suspended (no limits)"
        print(f"{count} {label} after {queued:.1f} s", flush=True)
        time.sleep(2)
        after = rss_mb()
        cpu = time.process_time()
        time.sleep(seconds)
        cpu_share = (time.process_time() - cpu) / seconds
        result = {
            "limited": limited,
            "plans": count,
            "seconds_to_queue": round(queued, 1),
            "extra_rss_mb": round(after - before, 1),
            "cpu_share_of_a_core": round(cpu_share, 4),
        }
        print(f"{label}:", result, flush=True)  # before terminating count + 1 plans
        started = time.perf_counter()
    print(f"terminating with them: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def hand_over(url: str, samples: int) -> dict[str, float]:
    with World(url, pool_size=5) as world:
        holder = world.trigger(Stamped, "lat", True)
        plan_id = holder.execution_plan_id
        while True:
            plan = world.persistence.load_execution_plan(plan_id)
            step = next((s for s in plan.steps.values() if s.state == "suspended"), None)
            if step is not None:
                break
            time.sleep(0.05)
        triggered = [world.trigger(Stamped, "lat") for _ in range(samples)]
        while waiting(world, "lat") < samples:
            time.sleep(0.1)
        Stamped.stamps.clear()
        world.event(plan_id, step.id, "go").result(30)
        for t in triggered:
            t.finished.result(300)
        stamps = sorted(Stamped.stamps)
        gaps = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(stamps)]
        gaps.sort()
        return {
            "samples": len(gaps),
            "p50_ms": round(statistics.median(gaps), 2),
            "p99_ms": round(gaps[int(len(gaps) * 0.99) - 1], 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--waiters", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--skip-w1", action="store_true")
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:  # alone in its process: the RSS of the plans themselves
            many_waiters(fresh_database("postgresql", Path(tmp)), args.waiters, args.seconds, False)
            return
        for kind in () if args.skip_w1 else ("sqlite", "postgresql"):
            plain = w1(fresh_database(kind, Path(tmp)), args.plans, limited=False)
            limited = w1(fresh_database(kind, Path(tmp)), args.plans, limited=True)
            print(
                f"W1 {kind}: plain {plain:.0f} steps/s, limited {limited:.0f} steps/s "
                f"({limited / plain:.0%} of plain)",
                flush=True,
            )
        print(
            "hand-over:",
            hand_over(fresh_database("postgresql", Path(tmp)), args.samples),
            flush=True,
        )
        many_waiters(fresh_database("postgresql", Path(tmp)), args.waiters, args.seconds)


if __name__ == "__main__":
    main()
