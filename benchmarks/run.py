"""W1 (throughput) and W3 (latency) for pydynflow, side by side with DBOS.

W1: ``--plans`` plans of 10 sequential no-op steps, all triggered at once by
``--starters`` client threads (1 and 4 by default); time from the first trigger
until every plan finished -> steps per second. Also counts database commits per
step (the batching of the executor core).
W3: trigger -> finished latency of a 1-step plan, ``--samples`` sequential
runs after a warm-up -> p50/p99 in milliseconds.

Each runs on a fresh SQLite file and a fresh PostgreSQL database; DBOS runs the
same workloads on the same database kind in the same run (from its own virtual
environment, ``benchmarks/.venv-dbos``, created on first use with ``pip install
dbos``). ``DYNFLOW_BENCH_DATABASE`` and ``DYNFLOW_BENCH_DBOS_DATABASE`` name the
PostgreSQL databases (dropped and created).
Usage: ``python benchmarks/run.py [--plans N] [--samples N] [--no-dbos]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import STEPS, OneStep, TenSteps

from dynflow import World
from dynflow.persistence.sql.database import Database

HERE = Path(__file__).parent
DBOS_VENV = HERE / ".venv-dbos"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
#: the PostgreSQL databases the benchmarks drop and create (several checkouts on one
#: server: give each its own names)
PG_DATABASE = os.environ.get("DYNFLOW_BENCH_DATABASE", "dynflow_bench")
DBOS_DATABASE = os.environ.get("DYNFLOW_BENCH_DBOS_DATABASE", "dbos_bench")


def fresh_database(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        path = tmp / f"bench-{time.monotonic_ns()}.sqlite3"
        return f"sqlite:///{path}"
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
    admin.dispose()
    return PG_SERVER + PG_DATABASE


def count_commits(world: World) -> list[int]:
    """Count write transactions (one commit each, or one autocommitted statement)."""
    counter = [0]
    db = world.persistence.db
    # write_statement opens a write() of its own unless the database autocommits it
    autocommits = type(db).write_statement is not Database.write_statement
    names = ["write", "write_statement"] if autocommits else ["write"]
    targets: list[tuple[Any, str]] = [(db, name) for name in names]
    # PostgreSQL: the executor's fenced writes and the plans' inserts are single
    # statements straight on the driver, outside write() and write_statement()
    bulk = getattr(world.persistence, "bulk", None)
    targets += [(bulk, name) for name in ("run", "write_fenced") if hasattr(bulk, name)]
    for target, name in targets:
        original = getattr(target, name)

        def counted(*args: Any, original: Any = original, **kwargs: Any) -> Any:
            counter[0] += 1
            return original(*args, **kwargs)

        setattr(target, name, counted)
    return counter


def w1(url: str, plans: int, starters: int) -> dict[str, Any]:
    with World(url, pool_size=5) as world:
        world.trigger(TenSteps).finished.result(60)  # warm-up
        commits = count_commits(world)
        cpu = time.process_time()
        started = time.perf_counter()
        with ThreadPoolExecutor(starters) as pool:
            triggered = list(pool.map(lambda _: world.trigger(TenSteps), range(plans)))
        for t in triggered:
            plan = t.finished.result(600)
            assert plan.result == "success", plan
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    steps = plans * STEPS
    return {
        "plans": plans,
        "starters": starters,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1),
        "commits_per_step": round(commits[0] / steps, 3),
        # CPU time of this process (planning, executor, workers, driver) per step
        "cpu_ms_per_step": round(cpu * 1000 / steps, 4),
    }


def w3(url: str, samples: int) -> dict[str, Any]:
    with World(url) as world:
        for _ in range(20):
            world.trigger(OneStep).finished.result(60)
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            world.trigger(OneStep).finished.result(60)
            latencies.append((time.perf_counter() - started) * 1000)
    return percentiles(latencies)


def percentiles(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def ensure_dbos() -> Path:
    python = DBOS_VENV / "bin" / "python"
    if not python.exists():
        print("creating benchmarks/.venv-dbos with dbos ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(DBOS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "dbos"], check=True)
    return python


def dbos(
    python: Path, kind: str, tmp: Path, workload: str, args: argparse.Namespace, starters: int = 1
) -> dict[str, Any]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'dbos-{time.monotonic_ns()}.sqlite'}"
        extra = ["--sqlite-wal"]  # DBOS's best SQLite setting (its default is rollback journal)
    else:
        url = f"postgresql://postgres@127.0.0.1:5432/{DBOS_DATABASE}"
        extra = []
    command = [
        str(python),
        str(HERE / "dbos_bench.py"),
        *("--database-url", url, "--workload", workload),
        *("--plans", str(args.plans), "--samples", str(args.samples)),
        *("--starters", str(starters), *extra),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--starters", default="1,4", help="W1 client threads, comma-separated")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-dbos", action="store_true")
    args = parser.parse_args()
    python = None if args.no_dbos else ensure_dbos()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in args.databases.split(","):
            for starters in (int(n) for n in args.starters.split(",")):
                row: dict[str, Any] = {"db": kind, "starters": starters}
                row["w1"] = w1(fresh_database(kind, tmp), args.plans, starters)
                if python is not None:
                    row["dbos_w1"] = dbos(python, kind, tmp, "w1", args, starters)
                    ratio = row["w1"]["steps_per_s"] / row["dbos_w1"]["steps_per_s"]
                    row["w1_ratio"] = round(ratio, 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
            row = {"db": kind, "w3": w3(fresh_database(kind, tmp), args.samples)}
            if python is not None:
                row["dbos_w3"] = dbos(python, kind, tmp, "w3", args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    when = f"{datetime.now(UTC):%Y-%m-%d} {platform.machine()} Python {platform.python_version()}"
    print(f"\n{when}")
    print(
        "| db | W1 starters | pydynflow steps/s | commits/step | CPU ms/step | DBOS steps/s "
        "| DBOS CPU ms/step | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in (r for r in rows if "w1" in r):
        d = r.get("dbos_w1", {})
        print(
            f"| {r['db']} | {r['starters']} | {r['w1']['steps_per_s']} | "
            f"{r['w1']['commits_per_step']} | {r['w1']['cpu_ms_per_step']} | "
            f"{d.get('steps_per_s', '-')} | {d.get('cpu_ms_per_step', '-')} | "
            f"{r.get('w1_ratio', '-')} |"
        )
    print("\n| db | W3 pydynflow p50 / p99 ms | DBOS p50 / p99 ms |")
    print("|---|---|---|")
    for r in (r for r in rows if "w3" in r):
        d = r.get("dbos_w3", {})
        print(
            f"| {r['db']} | {r['w3']['p50_ms']} / {r['w3']['p99_ms']} | "
            f"{d.get('p50_ms', '-')} / {d.get('p99_ms', '-')} |"
        )


if __name__ == "__main__":
    main()
