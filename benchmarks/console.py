"""The console's plans list over many plans in PostgreSQL: server time per request.

Fills a fresh PostgreSQL database with ``--plans`` plan rows (bulk INSERTs straight into
``dynflow_execution_plans``, in batches, with a realistic mix: most plans stopped/success,
some failed, paused, running, planned or scheduled; twenty labels; started over the
last thirty days), then times ``GET /`` and ``GET /api/plans`` through Starlette's
TestClient with and without filters, on the first page and a deep one. The time is
measured inside the ASGI app (from the request reaching it to the last body byte), so
it is the server's time, without the test client's. Prints p50/p99 in milliseconds over
``--requests`` requests per case (after two warm-up requests).

With ``--plan-page`` it measures the plan page instead (SQLite, no PostgreSQL needed):
plans of about 1,000 and 10,000 steps (planned, not run), every tab of ``GET
/plans/{id}``, server time p50/p99 and the size of the HTML. With ``--plan-graph``, only
the graph's drawing (``graph.layout`` and ``graph.svg``) of the same plans, in process
(no database): median of 7.

With ``--idle-streams N`` it measures the live updates instead: a fresh PostgreSQL
database (``--database`` + ``_sse``) with N plans suspended (running, waiting for an
event), a console started as ``dynflow console`` (uvicorn) in a subprocess, and its CPU
time (``/proc/<pid>/stat``, user + system) over ``--seconds`` with no stream open, then
with one ``GET /plans/{id}/events`` stream open on each plan.

Usage: ``python benchmarks/console.py [--plans N] [--requests N] [--database NAME]
[--keep] [--reuse] [--only TEXT] [--plan-page] [--plan-graph] [--idle-streams N]
[--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from dynflow import Action, World
from dynflow.persistence.tables import execution_plans
from dynflow.web import NO_AUTH, create_app

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DATABASE = "dynflow_bench_console"
BATCH = 5_000
#: the plans list's sort columns (the console's SORTS)
SORT_COLUMNS = ("started_at", "ended_at", "label", "state", "result", "duration")
#: the deepest page of 25 the console pages to (its MAX_DEPTH: the first 10,000 plans)
DEEPEST = 400
STARTED_AFTER = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
LABELS = [f"Acme::Action{n:02d}" for n in range(20)]
#: (state, result, weight)
MIX = [
    ("stopped", "success", 80.0),
    ("stopped", "error", 6.0),
    ("stopped", "warning", 3.0),
    ("stopped", "cancelled", 2.0),
    ("paused", "error", 4.0),
    ("running", "pending", 2.0),
    ("planned", "pending", 1.0),
    ("scheduled", "pending", 1.0),
    ("pending", "pending", 1.0),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def database_url(name: str) -> str:
    return sa.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)


def fresh_database(name: str) -> str:
    url = sa.make_url(PG_SERVER)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return database_url(name)


def filled(name: str) -> int:
    """How many plans the database ``name`` holds (0 when it does not exist)."""
    url = sa.make_url(PG_SERVER)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).scalar()
    admin.dispose()
    if not exists:
        return 0
    engine = sa.create_engine(database_url(name))
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(execution_plans.name):
                return 0
            return int(
                connection.execute(
                    sa.select(sa.func.count()).select_from(execution_plans)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def drop_database(name: str) -> None:
    url = sa.make_url(PG_SERVER)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def plan_rows(count: int, rng: random.Random) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    kinds = [(state, result) for state, result, _ in MIX]
    weights = [weight for _, _, weight in MIX]
    rows = []
    for _ in range(count):
        state, result = rng.choices(kinds, weights)[0]
        started = None
        ended = None
        if state in ("stopped", "paused", "running"):
            started = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            if state == "stopped":
                ended = started + timedelta(seconds=rng.uniform(0.01, 600))
        elapsed = (ended - started).total_seconds() if started and ended else 0.0
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "label": rng.choice(LABELS),
                "state": state,
                "result": result,
                "started_at": started,
                "ended_at": ended,
                "execution_time": elapsed / 2,
                "real_time": elapsed,
                "caller_execution_plan_id": None,
                "caller_action_id": None,
                "data": {"run_flow": None, "finalize_flow": []},
            }
        )
    return rows


def fill(url: str, plans: int) -> float:
    rng = random.Random(42)
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.begin() as connection:
        for offset in range(0, plans, BATCH):
            connection.execute(execution_plans.insert(), plan_rows(min(BATCH, plans - offset), rng))
    engine.dispose()
    vacuum(url)
    return time.perf_counter() - started


def vacuum(url: str) -> None:
    """As autovacuum would after a bulk load: statistics, and the visibility map that
    lets index-only scans skip the table."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f"VACUUM (ANALYZE) {execution_plans.name}"))
    engine.dispose()


class Timed:
    """An ASGI wrapper recording the app's time for each request."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.times.append(time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(client: TestClient, timed: Timed, path: str, requests: int) -> tuple[float, float]:
    for _ in range(2):
        assert client.get(path).status_code == 200, path
    timed.times.clear()
    for _ in range(requests):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
    ms = [t * 1000 for t in timed.times]
    return statistics.median(ms), percentile(ms, 0.99)


class BenchLeaf(Action):
    def run(self, event: Any = None) -> None:
        self.output["n"] = self.input["n"]


class BenchBig(Action):
    """A sequence of ``groups`` concurrences of ten leaves, each with a 200-byte input."""

    def plan(self, groups: int) -> None:
        with self.sequence():
            for group in range(groups):
                with self.concurrence():
                    for n in range(10):
                        self.plan_action(BenchLeaf, n=f"{group}-{n}", payload="p" * 200)


def plan_page(requests: int) -> None:
    import tempfile

    directory = tempfile.mkdtemp(prefix="dynflow-bench-console-")
    world = World(f"sqlite:///{directory}/bench.sqlite3")
    try:
        timed = Timed(create_app(world, auth=NO_AUTH))
        print(f"{platform.node()}, SQLite, plan page, {requests} requests each")
        print(f"{'request':44} {'steps':>6} {'p50 ms':>8} {'p99 ms':>8} {'KB':>8}")
        with TestClient(timed, base_url="http://localhost") as client:
            for groups in (50, 500):
                started = time.perf_counter()
                plan = world.plan(BenchBig, groups)
                took = time.perf_counter() - started
                print(f"(planned {len(plan.steps)} steps in {took:.1f}s)")
                for tab in ("graph", "timeline", "steps", "actions", "history", "sub-plans"):
                    path = f"/plans/{plan.id}?tab={tab}"
                    size = len(client.get(path).content)
                    p50, p99 = measure(client, timed, path, requests)
                    name = f"GET /plans/{{id}}?tab={tab}"
                    print(f"{name:44} {len(plan.steps):6} {p50:8.1f} {p99:8.1f} {size / 1024:8.0f}")
                first = min(plan.steps)
                path = f"/plans/{plan.id}?tab=graph&step={first}"
                size = len(client.get(path).content)
                p50, p99 = measure(client, timed, path, requests)
                name = "GET /plans/{id}?step= (side panel)"
                print(f"{name:44} {len(plan.steps):6} {p50:8.1f} {p99:8.1f} {size / 1024:8.0f}")
    finally:
        world.terminate()


def plan_graph() -> None:
    from dynflow import PlanResult, PlanState
    from dynflow.execution_plan.builder import PlanBuilder
    from dynflow.web import graph

    print(f"{platform.node()}, graph drawing in process, median of 7")
    print(f"{'steps':>6} {'ms':>8} {'SVG KB':>8}")
    for groups in (50, 500):
        builder = PlanBuilder(None)  # type: ignore[arg-type]
        builder.build(BenchBig, (groups,), {})
        plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
        times = []
        for _ in range(7):
            started = time.perf_counter()
            drawn = graph.svg(plan, graph.layout(plan), "/plans/x?tab=graph")
            times.append(time.perf_counter() - started)
        ms = statistics.median(times) * 1000
        print(f"{len(plan.steps):6} {ms:8.1f} {len(drawn) / 1024:8.0f}")


def list_cases(plans: int) -> list[tuple[str, str]]:
    """The plans list's cases: filters, every sort column both ways, deep pages."""
    deep = min(DEEPEST, plans // 25)
    cases = [
        ("GET /api/limits (reads no plan: the floor)", "/api/limits"),
        ("GET /", "/"),
        ("GET / deep page", f"/?page={deep}"),
        ("GET / state=paused", "/?state=paused"),
        ("GET / result=error&label=…", f"/?result=error&label={LABELS[3]}"),
        ("GET / text=Action1", "/?text=Action1"),
        ("GET / started_after=…", f"/?started_after={STARTED_AFTER}"),
        ("GET /api/plans", "/api/plans"),
        ("GET /api/plans per_page=100", "/api/plans?per_page=100"),
        ("GET /api/plans deep page", f"/api/plans?page={deep}"),
        ("GET /api/plans per_page=100 deep page", "/api/plans?per_page=100&page=100"),
        ("GET /api/plans state=stopped&result=success", "/api/plans?state=stopped&result=success"),
        ("GET /api/plans state=running deep", "/api/plans?state=running&page=40"),
        ("GET /api/plans label=…", f"/api/plans?label={LABELS[7]}"),
    ]
    for sort in SORT_COLUMNS:
        for desc in ("true", "false"):
            way = "desc" if desc == "true" else "asc"
            cases.append(
                (f"GET /api/plans sort={sort} {way}", f"/api/plans?sort={sort}&desc={desc}")
            )
            cases.append(
                (
                    f"GET / sort={sort} {way} state=paused",
                    f"/?sort={sort}&desc={desc}&state=paused",
                )
            )
            cases.append(
                (
                    f"GET /api/plans sort={sort} {way} label=…",
                    f"/api/plans?sort={sort}&desc={desc}&label={LABELS[5]}",
                )
            )
        cases.append(
            (f"GET /api/plans sort={sort} deep page", f"/api/plans?sort={sort}&page={deep}")
        )
    return cases


def plans_list(args: argparse.Namespace) -> None:
    if args.reuse and filled(args.database) == args.plans:
        url = database_url(args.database)
        world = World(url, executor=False)  # migrates the schema if it is older
        vacuum(url)
        print(f"reusing {args.database} ({args.plans} plans)")
    else:
        url = fresh_database(args.database)
        world = World(url, executor=False)
        seconds = fill(url, args.plans)
        print(f"inserted {args.plans} plans in {seconds:.1f}s ({args.plans / seconds:,.0f}/s)")
    try:
        timed = Timed(create_app(world, auth=NO_AUTH))
        cases = [c for c in list_cases(args.plans) if not args.only or args.only in c[0]]
        print(f"{platform.node()}, PostgreSQL, {args.plans} plans, {args.requests} requests each")
        print(f"{'request':52} {'p50 ms':>8} {'p99 ms':>8}")
        with TestClient(timed, base_url="http://localhost") as client:
            for name, path in cases:
                p50, p99 = measure(client, timed, path, args.requests)
                print(f"{name:52} {p50:8.1f} {p99:8.1f}", flush=True)
    finally:
        world.terminate()
        if not args.keep:
            drop_database(args.database)


class BenchWait(Action):
    """Suspends until an event comes: a running plan that does not change."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, seconds: float) -> float:
    """The share of one core process ``pid`` used over the next ``seconds``."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


class Streams:
    """``GET /plans/{id}/events`` streams held open on a thread of their own; counts the
    events and keep-alive comments they receive."""

    def __init__(self, port: int, plan_ids: list[str]) -> None:
        self.port = port
        self.plan_ids = plan_ids
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.events = 0
        self.comments = 0
        self.failed: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._future = asyncio.run_coroutine_threadsafe(self._all(), self._loop)

    async def _all(self) -> None:
        ready: list[asyncio.Event] = []
        tasks = []
        for plan_id in self.plan_ids:
            event = asyncio.Event()
            ready.append(event)
            tasks.append(asyncio.create_task(self._one(plan_id, event)))
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
            self.opened.set()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.closed.set()

    async def _one(self, plan_id: str, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"GET /plans/{plan_id}/events HTTP/1.1\r\nHost: localhost\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        try:
            while line := await reader.readline():
                if line.startswith(b"HTTP/1.1 ") and b" 200 " not in line:
                    self.failed.append(line.decode().strip())
                    ready.set()
                    return
                if line.startswith(b"data: "):
                    self.events += 1
                    ready.set()
                elif line.startswith(b": keep-alive"):
                    self.comments += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._future.cancel)
        self.closed.wait(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def idle_streams(args: argparse.Namespace) -> None:
    """CPU of a console process (``dynflow console`` under uvicorn) holding
    ``--idle-streams`` live streams open on suspended plans, and without them."""
    name = f"{args.database}_sse"
    url = fresh_database(name)
    world = World(url)
    server: subprocess.Popen[bytes] | None = None
    try:
        triggered = [world.trigger(BenchWait) for _ in range(args.idle_streams)]
        plan_ids = [t.execution_plan_id for t in triggered]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            plans = [world.persistence.load_execution_plan(i) for i in plan_ids]
            suspended = [p for p in plans if any(s.state == "suspended" for s in p.steps.values())]
            if len(suspended) == len(plan_ids):
                break
            time.sleep(0.2)
        else:
            raise SystemExit("the plans did not all suspend within 120 s")
        port = free_port()
        command = [sys.executable, "-m", "dynflow.cli.main", "console"]
        command += ["--database-url", url, "--port", str(port)]
        server = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/worlds", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the console did not start") from None
                time.sleep(0.2)
        time.sleep(2)  # start-up done
        seconds = args.seconds
        print(f"{platform.node()}, PostgreSQL, console under uvicorn, {seconds:.0f} s per case")
        print(f"{'case':40} {'CPU % of a core':>16}")
        print(f"{'no stream open':40} {100 * cpu_share(server.pid, seconds):16.2f}", flush=True)
        streams = Streams(port, plan_ids)
        if not streams.opened.wait(90):
            raise SystemExit("the streams did not all open")
        if streams.failed:
            raise SystemExit(f"streams refused: {streams.failed[:3]}")
        time.sleep(2)
        share = cpu_share(server.pid, seconds)
        case = f"{len(plan_ids)} idle streams open"
        print(f"{case:40} {100 * share:16.2f}")
        print(f"(events received: {streams.events}, keep-alive comments: {streams.comments})")
        streams.close()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                print("(the console did not stop within 30 s of SIGTERM: killed)")
                server.kill()
                server.wait(10)
        world.terminate()
        if not args.keep:
            drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--database", default=DATABASE, help="PostgreSQL database to fill")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="use the database as it is if it has --plans plans"
    )
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    parser.add_argument("--plan-page", action="store_true", help="measure the plan page")
    parser.add_argument("--plan-graph", action="store_true", help="measure the graph drawing")
    parser.add_argument(
        "--idle-streams",
        type=int,
        default=0,
        help="measure a console's CPU with this many live streams open on idle plans",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="CPU measuring time")
    args = parser.parse_args()
    if args.plan_graph:
        plan_graph()
        return
    if args.idle_streams:
        idle_streams(args)
        return
    if args.plan_page:
        plan_page(min(args.requests, 20))
        return
    plans_list(args)


if __name__ == "__main__":
    main()
