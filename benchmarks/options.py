"""Trigger options: the cost of an idempotency key, and how fast ``after`` chains go.

1. W1 (``--plans`` plans of 10 sequential no-op steps, 4 triggering threads) with a
   unique ``key`` on every trigger, against W1 without keys, in the same run,
   alternating ``--rounds`` times on a fresh database each time -> median steps/s.
2. A chain of ``--chain`` one-step plans, each ``after`` the previous one, created
   first and started by executing the first -> total time, and the per-link latency
   (from a plan's end to the start of the next) p50/p99.

Usage: ``python benchmarks/options.py [--db postgresql,sqlite] [--plans N] [--chain N]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench_actions import STEPS, OneStep, TenSteps
from run import fresh_database, percentiles

from dynflow import World


def w1(url: str, plans: int, keyed: bool) -> float:
    with World(url, pool_size=5) as world:
        world.trigger(TenSteps).finished.result(60)  # warm-up

        def trigger(_: int) -> Any:
            if keyed:
                return world.options(key=str(uuid.uuid4())).trigger(TenSteps)
            return world.trigger(TenSteps)

        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            triggered = list(pool.map(trigger, range(plans)))
        for t in triggered:
            assert t.finished.result(600).result == "success"
        return plans * STEPS / (time.perf_counter() - started)


def chain(url: str, length: int) -> dict[str, Any]:
    with World(url, pool_size=5, delayed_interval=5.0) as world:
        world.trigger(OneStep).finished.result(60)  # warm-up
        first = world.plan(OneStep)
        ids = [first.id]
        created = time.perf_counter()
        for _ in range(length - 1):
            ids.append(world.options(after=[ids[-1]]).trigger(OneStep).execution_plan_id)
        creating = time.perf_counter() - created
        started = time.perf_counter()
        world.execute(first.id).result(60)
        deadline = time.monotonic() + 600
        while world.persistence.load_execution_plan(ids[-1]).state != "stopped":
            assert time.monotonic() < deadline, "the chain did not finish"
            time.sleep(0.05)
        total = time.perf_counter() - started
        plans = {p.id: p for p in world.persistence.find_execution_plans(filters={"id": ids})}
    assert all(p.result == "success" for p in plans.values())
    links = [
        (plans[b].started_at - plans[a].ended_at).total_seconds() * 1000  # type: ignore[operator]
        for a, b in itertools.pairwise(ids)
    ]
    return {
        "plans": length,
        "create_s": round(creating, 2),
        "run_s": round(total, 2),
        "link": percentiles(links),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgresql,sqlite")
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chain", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db.split(","):
            runs: dict[str, list[float]] = {"no key": [], "key": []}
            for _ in range(args.rounds):
                for keyed in (False, True):
                    url = fresh_database(kind, Path(tmp))
                    runs["key" if keyed else "no key"].append(w1(url, args.plans, keyed))
            medians = {name: round(statistics.median(v), 1) for name, v in runs.items()}
            results[kind] = {
                "w1_steps_per_s": {n: [round(x, 1) for x in v] for n, v in runs.items()},
                "w1_median": medians,
                "key_cost_percent": round(100 * (1 - medians["key"] / medians["no key"]), 1),
                "chain": chain(fresh_database(kind, Path(tmp)), args.chain),
            }
            print(json.dumps({kind: results[kind]}, indent=2), flush=True)


if __name__ == "__main__":
    main()
