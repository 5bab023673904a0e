"""Soak: latency under sustained load while executor processes are replaced.

One client world (``executor=False``) and ``--executors`` (2) ``dynflow executor``
processes on one PostgreSQL database of this benchmark's own. The client triggers
plans at a fixed ``--rate`` (plans per second), in turn: a plain 1-step plan, a
plan whose step suspends until the client sends it an event, and a parent with
``--children`` (3) sub-plans. Every ``--restart-every`` seconds the oldest
executor gets SIGTERM and a new one starts, for ``--minutes``.

Each minute prints one JSON line: trigger -> finished latency p50/p99 per kind
(of the plans triggered in that minute), resident memory of each process,
connections of the database (``pg_stat_activity``, by state), CPU seconds of the
database's backends against the Python processes, the size of the dynflow tables
(``pg_total_relation_size``) and their dead tuples. At the end: p99 of the last 3
minutes against the first 3, per kind.

Usage: ``python benchmarks/soak.py [--minutes 15] [--restart-every 180] [--rate 6]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import FewChildren, OneStep, WaitEvent
from remote import start_executors, wait_for_executors
from run import PG_SERVER

from dynflow import World

KINDS = ("plain", "event", "parent")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def fresh_database(name: str, explain_ms: int | None) -> str:
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        if explain_ms is not None:  # the plans of slow statements in the server's log
            for setting, value in (
                ("session_preload_libraries", "auto_explain"),
                ("auto_explain.log_min_duration", str(explain_ms)),
            ):
                connection.execute(sa.text(f'ALTER DATABASE "{name}" SET {setting} = {value}'))
    admin.dispose()
    return PG_SERVER + name


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Load:
    """Triggers plans at a fixed rate and records their latency by trigger minute."""

    def __init__(self, client: World, rate: float, children: int, started: float) -> None:
        self.client = client
        self.rate = rate
        self.children = children
        self.started = started
        self.latencies: dict[tuple[int, str], list[float]] = defaultdict(list)
        self.failed: dict[str, int] = defaultdict(int)
        self.running: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._events = ThreadPoolExecutor(8, thread_name_prefix="soak-event")
        self._triggers = ThreadPoolExecutor(4, thread_name_prefix="soak-trigger")

    def run(self, until: float) -> None:
        n = 0
        next_at = time.monotonic()
        while next_at < until:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            kind = KINDS[n % len(KINDS)]
            self._triggers.submit(self._one, kind, time.monotonic())
            n += 1
            next_at += 1 / self.rate

    def _one(self, kind: str, began: float) -> None:
        minute = int((began - self.started) // 60)
        try:
            if kind == "plain":
                triggered = self.client.trigger(OneStep)
            elif kind == "parent":
                triggered = self.client.trigger(FewChildren, self.children)
            else:
                triggered = self.client.trigger(WaitEvent)
                self._events.submit(self._send_event, triggered)
        except Exception:
            with self._lock:
                self.failed[kind] += 1
            return

        def done(future: Future[Any]) -> None:
            ok = future.exception() is None and future.result().result == "success"
            with self._lock:
                self.running.discard(future)
                if ok:
                    self.latencies[(minute, kind)].append((time.monotonic() - began) * 1000)
                else:
                    self.failed[kind] += 1

        with self._lock:  # kept only while running: a finished plan is let go
            self.running.add(triggered.finished)
        triggered.finished.add_done_callback(done)

    def _send_event(self, triggered: Any) -> None:
        # step 2: the run step of the plan's only action (step 1 is its plan step)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not triggered.finished.done():
            try:
                if self.client.event(triggered.execution_plan_id, 2, "go", optional=True).result(
                    60
                ):
                    return
            except Exception:
                pass
            time.sleep(0.05)

    def minute(self, minute: int) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {}
            for kind in KINDS:
                values = self.latencies.get((minute, kind), [])
                if values:
                    out[kind] = {
                        "n": len(values),
                        "p50_ms": round(statistics.median(values), 1),
                        "p99_ms": round(percentile(values, 0.99), 1),
                    }
            return out

    def window(self, minutes: range, kind: str) -> list[float]:
        with self._lock:
            return [v for m in minutes for v in self.latencies.get((m, kind), [])]

    def drain(self, seconds: float) -> None:
        """Wait for the plans still running (the last minute's latencies)."""
        self._triggers.shutdown(wait=True)
        deadline = time.monotonic() + seconds
        with self._lock:
            running = list(self.running)
        for future in running:
            with contextlib.suppress(Exception):  # counted as failed by its callback
                future.result(max(deadline - time.monotonic(), 0))
        self._events.shutdown(wait=True)


class Monitor:
    """Per-minute numbers of the database and the processes."""

    def __init__(self, url: str, database: str) -> None:
        self.engine = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres")
        self.database = database
        self.backend_cpu: dict[int, float] = {}
        self.server_cpu: dict[int, float] = {}
        self.executor_cpu: dict[int, float] = {}
        self.scans = (0, 0)
        self._pg_total()
        self.python = self._python_cpu([])

    def _pg_total(self) -> float:
        """CPU seconds all PostgreSQL processes of the machine used since the last call."""
        used = 0.0
        for pid in postgres_pids():
            now = cpu_seconds(pid)
            used += max(now - self.server_cpu.get(pid, 0.0), 0.0)
            self.server_cpu[pid] = now
        return used

    def _python_cpu(self, executors: list[subprocess.Popen[bytes]]) -> float:
        """CPU seconds of this process and of every executor so far (an executor that
        exited counts with its last reading)."""
        own = resource.getrusage(resource.RUSAGE_SELF)
        for process in executors:
            self.executor_cpu[process.pid] = max(
                cpu_seconds(process.pid), self.executor_cpu.get(process.pid, 0.0)
            )
        return own.ru_utime + own.ru_stime + sum(self.executor_cpu.values())

    def sample(self, executors: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
        db = {"d": self.database}
        with self.engine.connect() as connection:
            states: dict[str, int] = dict(
                connection.execute(
                    sa.text(
                        "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity "
                        "WHERE datname = :d GROUP BY 1"
                    ),
                    db,
                ).all()
            )
            pids = list(
                connection.execute(
                    sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), db
                ).scalars()
            )
        sizes, dead, scans = self.tables()
        rows_read = scans[0] - self.scans[0], scans[1] - self.scans[1]
        self.scans = scans
        backend = 0.0
        for pid in pids:
            now = cpu_seconds(pid)
            backend += now - self.backend_cpu.get(pid, 0.0)
            self.backend_cpu[pid] = now
        pg_total, python = self._pg_total(), self._python_cpu(executors)
        out = {
            "connections": {k: int(v) for k, v in states.items()},
            "cpu_s": {
                "postgres_ours": round(backend, 1),
                "postgres_all": round(pg_total, 1),
                "python": round(python - self.python, 1),
            },
            # rows the database walked over for the engine: by sequential scans, by
            # index scans (index entries, dead ones included)
            "rows_read": {"seq": rows_read[0], "index": rows_read[1]},
            "table_mb": sizes,
            "dead_tuples": dead,
            "load": round(os.getloadavg()[0], 2),
        }
        self.python = python
        return out

    def tables(self) -> tuple[dict[str, float], dict[str, int], tuple[int, int]]:
        engine = sa.create_engine(self.engine.url.set(database=self.database))
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT relname, pg_total_relation_size(relid), n_dead_tup, "
                        "coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0), "
                        "(SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes i "
                        "WHERE i.relid = t.relid) "
                        "FROM pg_stat_user_tables t WHERE relname LIKE 'dynflow%' ORDER BY 1"
                    )
                ).all()
        finally:
            engine.dispose()
        short = {r[0].removeprefix("dynflow_"): r for r in rows}
        sizes = {k: round(r[1] / 2**20, 2) for k, r in short.items() if r[1] > 64 * 1024}
        dead = {k: int(r[2]) for k, r in short.items() if r[2]}
        scans = sum(int(r[3]) for r in rows), sum(int(r[5]) for r in rows)
        return sizes, dead, scans

    def close(self) -> None:
        self.engine.dispose()


def replace(executors: list[subprocess.Popen[bytes]], url: str) -> float:
    """SIGTERM the oldest executor, wait for it, start a new one: seconds it took."""
    began = time.monotonic()
    oldest = executors.pop(0)
    oldest.send_signal(signal.SIGTERM)
    oldest.wait(120)
    executors.extend(start_executors(url, 1))
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--restart-every", type=float, default=180)
    parser.add_argument("--rate", type=float, default=6, help="plans triggered per second")
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--database", default="dynflow_soak_bench")
    parser.add_argument(
        "--explain-ms",
        type=int,
        help="log the plan of every statement slower than this (auto_explain, superuser)",
    )
    args = parser.parse_args()
    logging.getLogger("dynflow").setLevel(logging.ERROR)  # recoveries are expected here
    # a SIGTERM (an interrupted run) stops the executors too, as Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = fresh_database(args.database, args.explain_ms)
    World(url, executor=False).terminate()  # create the schema before executors start
    executors = start_executors(url, args.executors)
    monitor = Monitor(url, args.database)
    try:
        with World(url, executor=False) as client:
            wait_for_executors(client, len(executors))
            started = time.monotonic()
            until = started + args.minutes * 60
            load = Load(client, args.rate, args.children, started)
            stopping = threading.Event()

            def restarts() -> None:
                while not stopping.wait(args.restart_every):
                    took = replace(executors, url)
                    print(json.dumps({"restart_s": round(took, 1)}), flush=True)

            def report() -> None:
                minute = 0
                while not stopping.wait(max(started + (minute + 1) * 60 - time.monotonic(), 0)):
                    line: dict[str, Any] = {"minute": minute + 1, "latency": load.minute(minute)}
                    line["rss_mb"] = {
                        "client": rss_mb(os.getpid()),
                        **{f"executor_{p.pid}": rss_mb(p.pid) for p in executors},
                    }
                    line.update(monitor.sample(executors))
                    plans = sum(k["n"] for k in line["latency"].values())
                    read = line["rows_read"]["seq"] + line["rows_read"]["index"]
                    line["rows_read_per_plan"] = round(read / plans) if plans else None
                    print(json.dumps(line), flush=True)
                    minute += 1

            threads = [threading.Thread(target=f, daemon=True) for f in (restarts, report)]
            for thread in threads:
                thread.start()
            load.run(until)
            # latency of the last minute: its plans may still be running
            load.drain(120)
            stopping.set()
            summary(load, args.minutes)
    finally:
        monitor.close()
        for process in executors:
            process.send_signal(signal.SIGTERM)
        for process in executors:
            process.wait(120)


def summary(load: Load, minutes: float) -> None:
    total = int(minutes)
    first, last = range(0, min(3, total)), range(max(total - 3, 0), total)
    out: dict[str, Any] = {"failed": dict(load.failed)}
    for kind in KINDS:
        a, b = load.window(first, kind), load.window(last, kind)
        if a and b:
            out[kind] = {
                "first_p99_ms": round(percentile(a, 0.99), 1),
                "last_p99_ms": round(percentile(b, 0.99), 1),
                "first_p50_ms": round(statistics.median(a), 1),
                "last_p50_ms": round(statistics.median(b), 1),
                "p99_ratio": round(percentile(b, 0.99) / percentile(a, 0.99), 2),
            }
    print(json.dumps({"first_3_vs_last_3": out}), flush=True)


if __name__ == "__main__":
    main()
