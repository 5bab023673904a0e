"""The cost of observability on W1: metrics and traces on vs off, in the same run.

W1 (``--plans`` plans of 10 sequential no-op steps, triggered by 4 client threads)
runs ``--rounds`` times per configuration, the configurations alternated in each
round so that a busy moment of the machine hits them alike:

- ``off``: ``World(metrics=False, tracing=False)``
- ``metrics``: ``World(metrics=True, tracing=False)`` (a Prometheus registry of its
  own; counters and histograms updated per step, one commit counter per batch)
- ``metrics+otel``: ``World(metrics=True, tracing=True)`` with the OpenTelemetry API
  and no SDK configured (no-op spans: what an application that installs the extra but
  exports nothing pays)

Prints the median steps/s of each configuration (and every run), on SQLite and
PostgreSQL. On a shared machine W1 varies more from run to run than the cost
measured, so the script also times what observability adds to one step directly:
the runner's hook (``observe.step(work)`` and its report) and the finished-plan
hook, per configuration, in microseconds (``--calls`` calls, best of 5).
Usage: ``python benchmarks/metrics.py [--plans N] [--rounds N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_actions import STEPS, TenSteps
from run import fresh_database

from dynflow import World
from dynflow.execution_plan.states import Phase, StepState
from dynflow.executor.work import StepDone, Work

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "off": {"metrics": False, "tracing": False},
    "metrics": {"metrics": True, "tracing": False},
    "metrics+otel": {"metrics": True, "tracing": True},
}


def w1(url: str, plans: int, options: dict[str, Any]) -> float:
    """Steps per second of one W1 run (4 triggering threads)."""
    with World(url, pool_size=5, **options) as world:
        world.trigger(TenSteps).finished.result(60)  # warm-up
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            triggered = list(pool.map(lambda _: world.trigger(TenSteps), range(plans)))
        for t in triggered:
            assert t.finished.result(600).result == "success"
        seconds = time.perf_counter() - started
        if options["metrics"]:
            metrics = world.observe.metrics
            assert metrics is not None
            counted = metrics.registry.get_sample_value(
                "dynflow_steps_total", {"action": "bench_actions.Noop", "result": "success"}
            )
            assert counted == (plans + 1) * STEPS, counted  # the metrics did their work
    return plans * STEPS / seconds


def per_step_cost(calls: int) -> dict[str, float]:
    """Microseconds one step's observability costs, per configuration (best of 5)."""
    work = Work(
        execution_plan_id="p",
        step_id=2,
        action_id=1,
        action_class="bench_actions.Noop",
        phase=Phase.RUN,
        queue="default",
        input={},
        output={},
        event=None,
        sequence=1,
        run=1,
    )
    now = datetime.now(UTC)
    done = StepDone("p", 2, StepState.SUCCESS, {}, None, now, now, 0.0001, 1)
    costs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in CONFIGURATIONS.items():
            with World(f"sqlite:///{tmp}/{name}.sqlite3", **options) as world:
                observe = world.observe
                best = float("inf")
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(calls):
                        with observe.step(work) as seen:
                            seen(done)
                    best = min(best, time.perf_counter() - started)
                costs[name] = round(best / calls * 1e6, 2)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plans", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    print("per step, microseconds:", json.dumps(per_step_cost(args.calls)))
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            runs: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
            for _ in range(args.rounds):
                for name, options in CONFIGURATIONS.items():
                    url = fresh_database(kind, Path(tmp))
                    runs[name].append(round(w1(url, args.plans, options), 1))
            results[kind] = runs
    print(json.dumps(results, indent=2))
    print("| database | configuration | median steps/s | vs off | runs |")
    print("|---|---|---|---|---|")
    for kind, runs in results.items():
        base = statistics.median(runs["off"])
        for name, values in runs.items():
            median = statistics.median(values)
            print(
                f"| {kind} | {name} | {median:,.0f} | {100 * (median / base - 1):+.1f} % | "
                f"{' '.join(f'{v:,.0f}' for v in values)} |"
            )


if __name__ == "__main__":
    main()
