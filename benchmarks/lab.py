"""W1 across hosts: executors in network namespaces reach PostgreSQL through the lab's
proxy, which adds a one-way delay; a client world in the root namespace triggers.

For each executor count (``--executors``, default 1,2,3) and each one-way delay
(``--delays`` in ms, default 0,0.5,1,2.5: round trips of 0, 1, 2 and 5 ms): W1
(``--plans`` plans of 10 sequential no-op steps, 4 triggering threads), steps/s and
the ratio to the same executor count at 0 ms; CPU per step of the executors and the
client (from /proc), of this database's PostgreSQL backends, and of the proxy; database
commits per step; requests per step through the proxy (about one round trip each).

Needs root and ``ip netns``. Usage: ``sudo python benchmarks/lab.py [--plans N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_actions import STEPS, OneStep, TenSteps
from remote import commits, wait_for_executors
from run import PG_SERVER

from dynflow import World

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from tests.lab.hosts import Host, Lab, unavailable  # noqa: E402
from tests.lab.proxy import ProxyProcess, RemoteLink  # noqa: E402

DATABASE = f"dynflow_lab_{os.getpid()}"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def backends(url: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to this database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            return [int(pid) for pid in connection.execute(sa.text(query)).scalars()]
    finally:
        engine.dispose()


def fresh_database() -> str:
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    return PG_SERVER + DATABASE


def drop_database() -> None:
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    admin.dispose()


def start_executor(host: Host, link: RemoteLink, url: str) -> subprocess.Popen[bytes]:
    proxied = sa.make_url(url).set(host=link.address[0], port=link.address[1])
    command = [sys.executable, "-m", "dynflow.cli.main", "executor", "--database-url"]
    command += [proxied.render_as_string(hide_password=False), "--import", "bench_actions"]
    return subprocess.Popen(host.command(command), cwd=HERE, stderr=subprocess.DEVNULL)


def w1(
    client: World, url: str, plans: int, executors: list[int], links: list[RemoteLink]
) -> dict[str, Any]:
    for _ in range(20):
        client.trigger(OneStep).finished.result(60)
    db_pids = backends(url)
    before = {
        "commits": commits(url),
        "executors": sum(cpu_seconds(pid) for pid in executors),
        "client": sum(os.times()[:2]),
        "db": {pid: cpu_seconds(pid) for pid in db_pids},
        "proxy": cpu_seconds(links[0].process.pid),
        "requests": sum(link.stats()["requests"] for link in links),
    }
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        triggered = list(pool.map(lambda _: client.trigger(TenSteps), range(plans)))
    worlds: set[str] = set()
    for t in triggered:
        plan = t.finished.result(600)
        assert plan.result == "success", plan
        worlds.update(e.world_id for e in plan.execution_history if e.world_id)
    seconds = time.perf_counter() - started
    steps = plans * STEPS
    db_after = {pid: cpu_seconds(pid) for pid in backends(url)}
    db_cpu = sum(cpu - before["db"].get(pid, 0.0) for pid, cpu in db_after.items())
    executor_cpu = sum(cpu_seconds(pid) for pid in executors) - before["executors"]
    client_cpu = sum(os.times()[:2]) - before["client"]
    requests = sum(link.stats()["requests"] for link in links) - before["requests"]
    ms = 1000 / steps
    return {
        "steps_per_s": round(steps / seconds, 1),
        "seconds": round(seconds, 2),
        "executor_worlds_used": len(worlds - {client.id}),
        "load_average": round(os.getloadavg()[0], 1),
        "commits_per_step": round((commits(url) - before["commits"]) / steps, 2),
        "proxied_requests_per_step": round(requests / steps, 2),
        "cpu_ms_per_step": {
            "executors": round(executor_cpu * ms, 3),
            "client": round(client_cpu * ms, 3),
            "postgres": round(db_cpu * ms, 3),
            "proxy": round((cpu_seconds(links[0].process.pid) - before["proxy"]) * ms, 3),
        },
    }


def sequential(client: World, plans: int = 10) -> float:
    """Milliseconds per step of one plan of 10 steps running alone (median of
    ``plans``): the critical path of a step, where every round trip on it shows."""
    times = []
    for _ in range(plans):
        began = time.perf_counter()
        client.trigger(TenSteps).finished.result(60)
        times.append((time.perf_counter() - began) * 1000 / STEPS)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=300)
    parser.add_argument("--executors", default="1,2,3")
    parser.add_argument("--delays", default="0,0.5,1,2.5", help="one-way, ms; 0 first")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = unavailable()
    if reason is not None:
        raise SystemExit(f"the lab cannot run here: {reason}")
    counts = [int(n) for n in args.executors.split(",")]
    delays = [float(d) for d in args.delays.split(",")]
    url = fresh_database()
    World(url, executor=False).terminate()  # the schema, before executors start
    proxy = ProxyProcess()
    results: list[dict[str, Any]] = []
    try:
        with Lab(max(counts)) as lab:
            target = (sa.make_url(url).host or "127.0.0.1", sa.make_url(url).port or 5432)
            links = [proxy.add(h.name, (h.root_address, 0), target) for h in lab.hosts]
            for count in counts:
                processes = [start_executor(h, links[h.index - 1], url) for h in lab.hosts[:count]]
                try:
                    with World(url, executor=False) as client:
                        wait_for_executors(client, count)
                        for _ in range(args.rounds):  # rounds: load on a shared box drifts
                            for delay in delays:
                                for link in links:
                                    link.set_delay(delay)
                                pids = [p.pid for p in processes]
                                cell = w1(client, url, args.plans, pids, links[:count])
                                cell["alone_ms_per_step"] = sequential(client)
                                cell |= {"executors": count, "one_way_ms": delay}
                                results.append(cell)
                                print(json.dumps(cell), flush=True)
                finally:
                    for process in processes:
                        process.send_signal(signal.SIGTERM)
                    for process in processes:
                        process.wait(60)
    finally:
        proxy.close()
        drop_database()
    summary(results, counts, delays)


def summary(results: list[dict[str, Any]], counts: list[int], delays: list[float]) -> None:
    def median(count: int, delay: float, key: str = "steps_per_s") -> float:
        values = [r[key] for r in results if r["executors"] == count and r["one_way_ms"] == delay]
        return float(statistics.median(values))

    print("\nsteps/s, median of the rounds (ratio to 0 ms), by executors x added round trip")
    print("| executors | " + " | ".join(f"{2 * d:g} ms" for d in delays) + " |")
    for count in counts:
        zero = median(count, delays[0])
        cells = [f"{median(count, d):,.0f} ({median(count, d) / zero:.2f}x)" for d in delays]
        print(f"| {count} | " + " | ".join(cells) + " |")
    print("\nCPU ms per step (executors + client + postgres; proxy apart), median")
    for count in counts:
        for delay in delays:
            rows = [r for r in results if r["executors"] == count and r["one_way_ms"] == delay]
            parts = {
                k: statistics.median(r["cpu_ms_per_step"][k] for r in rows)
                for k in ("executors", "client", "postgres", "proxy")
            }
            total = parts["executors"] + parts["client"] + parts["postgres"]
            print(
                f"{count} executors, {2 * delay:g} ms: alone "
                f"{median(count, delay, 'alone_ms_per_step'):.2f} ms/step; CPU {total:.2f} "
                f"({', '.join(f'{k} {v:.2f}' for k, v in parts.items())}); "
                f"commits/step {median(count, delay, 'commits_per_step'):.2f}, "
                f"proxied requests/step {median(count, delay, 'proxied_requests_per_step'):.2f}"
            )


if __name__ == "__main__":
    main()
