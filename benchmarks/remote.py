"""W1 and W3 across processes: one client world, executor worlds in other processes.

W1: ``--plans`` plans of 10 sequential no-op steps triggered at once by 4 client
threads of a client world (``executor=False``) and run by ``--executors`` (2)
``dynflow executor`` processes on one PostgreSQL database; steps per second,
and database commits per step over all processes (``pg_stat_database``).
W3: trigger -> finished latency of a 1-step plan, client -> executor -> client.
DBOS runs W1 and W3 on the same database kind in the same run (one process; its
model has no separate client and executor processes).

Usage: ``python benchmarks/remote.py [--plans N] [--samples N] [--executors N]
[--only w1|w3] [--no-dbos]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import STEPS, OneStep, TenSteps
from run import dbos, ensure_dbos, fresh_database, percentiles

from dynflow import World

HERE = Path(__file__).parent


def commits(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sa.text(
                        "SELECT xact_commit FROM pg_stat_database "
                        "WHERE datname = current_database()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (Linux; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    idle = int(fields[3]) + int(fields[4])  # idle + iowait
    return (sum(int(f) for f in fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_executors(client: World, count: int) -> None:
    """Until ``count`` executor worlds are registered (at most a minute)."""
    deadline = time.monotonic() + 60
    while len(client.coordinator.find_worlds(active_executors_only=True)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("executors did not start")
        time.sleep(0.1)


def start_executors(url: str, count: int) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "dynflow.cli.main", "executor", "--database-url", url]
    command += ["--import", "bench_actions"]
    return [subprocess.Popen(command, cwd=HERE, stderr=subprocess.DEVNULL) for _ in range(count)]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument("--only", choices=("w1", "w3"), help="run one workload only")
    args = parser.parse_args()
    url = fresh_database("postgresql", Path(tempfile.gettempdir()))
    World(url, executor=False).terminate()  # create the schema before executors start
    executors = start_executors(url, args.executors)
    try:
        with World(url, executor=False) as client:
            wait_for_executors(client, len(executors))
            for _ in range(20 if args.only != "w3" else 50):
                client.trigger(OneStep).finished.result(60)
            w1 = {} if args.only == "w3" else run_w1(client, url, args.plans, len(executors))
            if args.only != "w1":
                w3 = run_w3(client, args.samples)
    finally:
        stop(executors)
    if not args.no_dbos:
        options = argparse.Namespace(plans=args.plans, samples=args.samples)
        with tempfile.TemporaryDirectory() as tmp:
            python = ensure_dbos()
            if args.only != "w3":
                result: dict[str, Any] = dbos(python, "postgresql", Path(tmp), "w1", options, 4)
                ratio = round(w1["steps_per_s"] / result["steps_per_s"], 2)
                print(json.dumps({"dbos_w1": result, "ratio": ratio}), flush=True)
            if args.only != "w1":
                # DBOS in one process: its model has no separate client and executor processes
                latency: dict[str, Any] = dbos(python, "postgresql", Path(tmp), "w3", options)
                w3_ratio = round(w3["p50_ms"] / latency["p50_ms"], 2)
                print(json.dumps({"dbos_w3": latency, "w3_ratio": w3_ratio}), flush=True)


def run_w1(client: World, url: str, plans: int, executors: int) -> dict[str, Any]:
    """W1 through the executor processes; prints and returns its numbers."""
    before = commits(url)
    busy = busy_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        triggered = list(pool.map(lambda _: client.trigger(TenSteps), range(plans)))
    finished = [t.finished.result(600) for t in triggered]
    seconds = time.perf_counter() - started
    busy = busy_seconds() - busy
    worlds: set[str] = set()  # checked once timed: the history is read from the database
    for plan in finished:
        assert plan.result == "success", plan
        worlds.update(e.world_id for e in plan.execution_history if e.world_id)
    steps = plans * STEPS
    w1 = {
        "plans": plans,
        "executors": executors,
        "executor_worlds_used": len(worlds),
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1),
        "commits_per_step": round((commits(url) - before) / steps, 3),
        # all processes (client, executors, database): what one step costs
        "machine_cpu_ms_per_step": round(busy * 1000 / steps, 3),
    }
    print(json.dumps({"w1": w1}), flush=True)
    return w1


def run_w3(client: World, samples: int) -> dict[str, Any]:
    """W3 through the executor processes; prints and returns its numbers."""
    latencies = []
    for _ in range(samples):
        began = time.perf_counter()
        client.trigger(OneStep).finished.result(60)
        latencies.append((time.perf_counter() - began) * 1000)
    w3 = percentiles(latencies)
    print(json.dumps({"w3": w3}), flush=True)
    return w3


if __name__ == "__main__":
    main()
