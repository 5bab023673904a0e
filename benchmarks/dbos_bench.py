"""DBOS side of the pydynflow-vs-DBOS benchmarks (run it with benchmarks/.venv-dbos).

Workloads:

* ``w1`` (throughput): ``--plans`` workflows (default 200), each running 10 no-op
  ``@DBOS.step()`` functions in order, are all started at once; we time from the
  first start until every result is available and report steps per second.
* ``w3`` (latency): a 1-step workflow is started and its result awaited,
  ``--samples`` times (default 200) one after another after ``--warmup`` runs;
  we report p50/p99 in milliseconds.

Every run starts from an empty system database: the SQLite file is deleted, or
the PostgreSQL database is dropped (DBOS creates it again at launch). Launch time
is reported separately and is not part of any measurement. The last stdout line
is a single JSON object; DBOS logs go to stderr.

Usage:
    benchmarks/.venv-dbos/bin/python benchmarks/dbos_bench.py \
        --database-url sqlite:////tmp/dbos_bench.sqlite --workload w1
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import sqlalchemy as sa
from dbos import DBOS, DBOSConfig

QUEUE_NAME = "bench"
STEPS_PER_PLAN = 10


@DBOS.step()
def noop_step(i: int) -> int:
    return i


@DBOS.workflow()
def ten_step_plan(n: int) -> int:
    for i in range(STEPS_PER_PLAN):
        noop_step(i)
    return n


@DBOS.workflow()
def one_step_plan(n: int) -> int:
    return noop_step(n)


def reset_database(url: str, sqlite_wal: bool) -> None:
    """Make sure the run starts from an empty system database."""
    parsed = sa.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = parsed.database
        if not path or path == ":memory:":
            raise SystemExit("use a file URL, e.g. sqlite:////tmp/x.sqlite")
        for suffix in ("", "-journal", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        if sqlite_wal:  # journal_mode=WAL persists in the file; DBOS keeps it
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        return
    admin = parsed.set(drivername="postgresql", database="postgres")
    conninfo = admin.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def wait_for_queue_worker() -> None:
    """DBOS's queue manager notices a newly registered queue within ~1 s; wait for it
    so that this start-up delay is not billed to the measurement."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(t.name == f"queue-worker-{QUEUE_NAME}" for t in threading.enumerate()):
            return
        time.sleep(0.01)
    raise RuntimeError("DBOS queue worker thread did not start")


def run_w1(plans: int, mode: str, concurrency: int, starters: int = 1) -> dict[str, Any]:
    if mode == "queue":
        # Workflows are persisted as ENQUEUED and a queue worker thread claims them
        # (up to `concurrency` at a time on this executor) every 10 ms. Results are
        # read by polling the database, 10 ms between polls.
        queue = DBOS.register_queue(
            QUEUE_NAME, worker_concurrency=concurrency, polling_interval_sec=0.01
        )
        wait_for_queue_worker()
        cpu = time.process_time()
        start = time.perf_counter()
        handles = [queue.enqueue(ten_step_plan, i) for i in range(plans)]
        results = [h.get_result(polling_interval_sec=0.01) for h in handles]
    else:
        # DBOS.start_workflow persists the workflow and runs it at once on DBOS's
        # (unbounded) executor thread pool; the handle awaits an in-process future.
        cpu = time.process_time()
        start = time.perf_counter()
        with ThreadPoolExecutor(starters) as pool:  # `starters` clients starting at once
            handles = list(pool.map(lambda i: DBOS.start_workflow(ten_step_plan, i), range(plans)))
        results = [h.get_result() for h in handles]
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert results == list(range(plans)), "unexpected workflow results"
    steps = plans * STEPS_PER_PLAN
    return {
        "plans": plans,
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_s": round(steps / seconds, 1),
        # CPU time of this process (all its threads) per step
        "cpu_ms_per_step": round(cpu * 1000 / steps, 4),
    }


def run_w3(samples: int, warmup: int) -> dict[str, Any]:
    latencies_ms: list[float] = []
    for i in range(warmup + samples):
        start = time.perf_counter()
        result = DBOS.start_workflow(one_step_plan, i).get_result()
        elapsed_ms = (time.perf_counter() - start) * 1000
        assert result == i
        if i >= warmup:
            latencies_ms.append(elapsed_ms)
    latencies_ms.sort()
    return {
        "samples": samples,
        "warmup": warmup,
        "p50_ms": round(percentile(latencies_ms, 50), 3),
        "p99_ms": round(percentile(latencies_ms, 99), 3),
        "mean_ms": round(statistics.fmean(latencies_ms), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        required=True,
        help="sqlite:////abs/path.sqlite or postgresql://user@host:port/db",
    )
    parser.add_argument("--workload", choices=("w1", "w3"), required=True)
    parser.add_argument("--plans", type=int, default=200, help="w1: number of workflows")
    parser.add_argument(
        "--starters", type=int, default=1, help="w1 (start mode): threads starting workflows"
    )
    parser.add_argument("--samples", type=int, default=200, help="w3: measured runs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before measuring")
    parser.add_argument(
        "--w1-mode",
        choices=("start", "queue"),
        default="start",
        help="w1: DBOS.start_workflow (default) or a DBOS queue",
    )
    parser.add_argument(
        "--queue-concurrency",
        type=int,
        default=20,
        help="w1 queue mode: worker_concurrency of the queue",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="sys_db_pool_size (DBOS default 20); default: 2 for SQLite, 5 for Postgres",
    )
    parser.add_argument(
        "--sqlite-wal",
        action="store_true",
        help="pre-create the SQLite file in WAL mode (DBOS default: rollback journal)",
    )
    args = parser.parse_args()

    dialect = sa.make_url(args.database_url).get_backend_name()
    # Pool sizes: the best of 1/2/3/5/8/20 for w1 on a 2-core box. DBOS's default
    # of 20 connections costs ~25% on Postgres (GIL + CPU contention) and ~15% on
    # SQLite (writers queue on the file lock anyway). Postgres needs >= 2: the
    # LISTEN/NOTIFY listener keeps one pooled connection for itself.
    pool_size = args.pool_size or (2 if dialect == "sqlite" else 5)
    reset_database(args.database_url, args.sqlite_wal)
    config: DBOSConfig = {
        "name": "dbos-bench",
        "system_database_url": args.database_url,
        "sys_db_pool_size": pool_size,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    launch_start = time.perf_counter()
    DBOS.launch()
    launch_s = time.perf_counter() - launch_start
    try:
        if args.workload == "w1":
            for i in range(args.warmup):  # untimed, pays first-call costs
                DBOS.start_workflow(ten_step_plan, i).get_result()
            numbers = run_w1(args.plans, args.w1_mode, args.queue_concurrency, args.starters)
            numbers["starters"] = args.starters
            numbers["mode"] = args.w1_mode
        else:
            numbers = run_w3(args.samples, args.warmup)
    finally:
        DBOS.destroy()
    report = {
        "engine": "dbos",
        "workload": args.workload,
        "db": "postgres" if dialect == "postgresql" else dialect,
        **numbers,
        "pool_size": pool_size,
        "sqlite_wal": args.sqlite_wal,
        "launch_s": round(launch_s, 3),
        "dbos_version": _dbos_version(),
    }
    print(json.dumps(report), flush=True)


def _dbos_version() -> str:
    from importlib.metadata import version

    return version("dbos")


if __name__ == "__main__":
    main()
