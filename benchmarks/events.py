"""W2 (sub-plans), W5 (many suspended plans) and event delivery latency.

W2: one parent with ``--children`` (1,000) sub-plans of one no-op step,
``concurrency_limit`` ``--limit`` (50): time from trigger until the parent finished.
W5: ``--suspended`` (10,000) plans whose only step is suspended, held by one
executor: resident memory of the process, then the time from ``world.event``
to the plan's finished future for ``--samples`` of them picked at random (p50/p99).
Event delivery: ``world.event`` -> its future resolved (the step has the event),
on a plan that suspends again after each event (p50/p99).

Usage: ``python benchmarks/events.py [--database-url URL] [--children N] [--limit N]
[--only w2|delivery|w5] ...``
(default: a fresh SQLite file).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dynflow import Action, WithSubPlans, World


class Noop(Action):
    def run(self, event: Any = None) -> None:
        pass


class Fanout(WithSubPlans, Action):
    concurrency_limit = 50

    def plan(self, children: int, limit: int = 50) -> None:
        self.plan_self(children=children, concurrency_limit=limit)

    def create_sub_plans(self) -> list[Any]:
        return [self.trigger(Noop) for _ in range(self.input["children"])]


class WaitOnce(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


class Echo(Action):
    """Suspends again after every event until it gets "stop"."""

    def run(self, event: Any = None) -> None:
        if event != "stop":
            self.suspend()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def w2(url: str, children: int, limit: int) -> dict[str, Any]:
    with World(url) as world:
        started = time.perf_counter()
        plan = world.trigger(Fanout, children, limit).finished.result(600)
        seconds = time.perf_counter() - started
        assert plan.result == "success", (plan, plan.errors)
        output = plan.entry_action.output
    return {"children": children, "limit": limit, "seconds": round(seconds, 2), "output": output}


def w5(url: str, suspended: int, samples: int) -> dict[str, Any]:
    before = rss_mb()
    with World(url) as world:
        triggered = [world.trigger(WaitOnce) for _ in range(suspended)]
        deadline = time.monotonic() + 600
        while world.persistence.find_execution_plan_counts({"state": "running"}) < suspended:
            if time.monotonic() > deadline:
                raise TimeoutError("plans did not all suspend")
            time.sleep(0.1)
        held = rss_mb()
        step_id = 2  # plan step 1, run step 2
        latencies = []
        for t in random.sample(triggered, samples):
            started = time.perf_counter()
            world.event(t.execution_plan_id, step_id, "go").result(30)
            t.finished.result(30)
            latencies.append((time.perf_counter() - started) * 1000)
    return {
        "suspended": suspended,
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(held, 1),
        "event_to_finished": percentiles(latencies),
    }


def delivery(url: str, samples: int) -> dict[str, Any]:
    with World(url) as world:
        triggered = world.trigger(Echo)
        plan_id, step_id = triggered.execution_plan_id, 2
        latencies = []
        for _ in range(samples + 20):
            started = time.perf_counter()
            world.event(plan_id, step_id, "ping").result(30)
            latencies.append((time.perf_counter() - started) * 1000)
            _wait_suspended(world, plan_id, step_id)
        world.event(plan_id, step_id, "stop").result(30)
        triggered.finished.result(30)
    return percentiles(latencies[20:])


def _wait_suspended(world: World, plan_id: str, step_id: int) -> None:
    """Wait until the step has taken the event and suspended again (in memory)."""
    core = world.executor.core  # type: ignore[union-attr]
    done = threading.Event()
    while not done.is_set():
        runtime = core.plans.get(plan_id)
        if runtime is None or runtime.steps[step_id].state == "suspended":
            done.set()
        else:
            time.sleep(0.0002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=50, help="W2's concurrency_limit")
    parser.add_argument("--suspended", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--only", choices=["w2", "delivery", "w5"], action="append", help="run only these"
    )
    args = parser.parse_args()
    only = set(args.only or ["w2", "delivery", "w5"])
    with tempfile.TemporaryDirectory() as tmp:

        def url(name: str) -> str:
            return args.database_url or f"sqlite:///{Path(tmp) / name}.sqlite3"

        if "w2" in only:
            print(json.dumps({"w2": w2(url("w2"), args.children, args.limit)}), flush=True)
        if "delivery" in only:
            print(json.dumps({"delivery": delivery(url("delivery"), args.samples)}), flush=True)
        if "w5" in only:
            print(json.dumps({"w5": w5(url("w5"), args.suspended, args.samples)}), flush=True)


if __name__ == "__main__":
    main()
