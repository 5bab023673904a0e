"""W4 — abnormal-state recovery on PostgreSQL: detection, recovery of orphans, chaos oracle.

Prints one JSON line per measurement:

- ``detection``: executor processes (``dynflow executor``) are killed (``kill -9``) or
  frozen (``SIGSTOP``, which is how a kill on another host looks from here: the process
  is still there, only its lease expires), each at a random moment of its heartbeat
  cycle; time until a client world has invalidated it (its world record is gone). With
  the defaults (heartbeat 5 s, lease 15 s, checks every 5 s) and with a fast lease.
  On one host a killed process is found by its pid at the next check; a frozen one
  only by its lease.
- ``recover``: 1,000 plans left running by a dead world (stale heartbeat, its
  execution locks still there), as ``tests/integration/test_lifecycle.py`` builds one;
  time of ``world.perform_validity_checks()`` and until all 1,000 are paused or done.
- ``chaos``: executors run plans of idempotent and non-idempotent steps (every run
  appends a line to a file) while one executor at a time is killed with ``kill -9`` at a
  random moment and a new one started; afterwards an oracle checks: no plan lost (each
  ends stopped or paused), no non-idempotent step ran twice, no lock left by a dead
  world.
- ``zombie``: an executor holding plans with a running step is frozen past its lease,
  another world takes its plans over, then it is let go (SIGCONT) and its step returns:
  nothing it writes after losing the locks may land (history entries with its id, step
  or plan rows changed).

Usage: ``python benchmarks/recovery.py [--kills N] [--zombies N] [--samples N]
[--plans N] [--budget SECONDS]``. Loopback only; the whole run stays under
``--budget`` (default 540 s).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from recovery_actions import Held, IdempotentHeld, IdempotentOrphan, Mixed, Orphan
from run import PG_SERVER

from dynflow import World
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.persistence.tables import (
    actions,
    coordinator_records,
    execution_history,
    execution_plans,
    steps,
)

HERE = Path(__file__).parent
FAST = {"heartbeat_interval": 0.5, "lease": 2.0, "validity_check_interval": 0.5}
DEFAULTS = {"heartbeat_interval": 5.0, "lease": 15.0, "validity_check_interval": 5.0}
FINAL = ("stopped", "paused")
#: what an executor logs when a write of a plan it lost is fenced off
FENCED = "no longer holds the execution lock"


def emit(name: str, **values: Any) -> None:
    print(json.dumps({name: values}), flush=True)


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(step)


def fresh_database() -> str:
    """An empty PostgreSQL database of its own (other benchmarks use other names)."""
    admin = sa.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text('DROP DATABASE IF EXISTS "dynflow_w4" WITH (FORCE)'))
        connection.execute(sa.text('CREATE DATABASE "dynflow_w4"'))
    admin.dispose()
    url = PG_SERVER + "dynflow_w4"
    World(url, executor=False).terminate()  # the schema, before executors start
    return url


#: every executor started, killed at exit whatever happens
STARTED: list[Executor] = []


class Executor:
    """One ``dynflow executor`` subprocess; its output goes to a log file."""

    def __init__(self, url: str, directory: Path, settings: dict[str, float]) -> None:
        self.log_path = directory / f"executor-{uuid.uuid4().hex[:8]}.log"
        command = [sys.executable, "-m", "dynflow.cli.main", "executor", "--database-url", url]
        command += ["--import", "recovery_actions", "--terminate-timeout", "5"]
        for name, value in settings.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=HERE, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.world_id = ""
        STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def serving(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"executor {self.pid} exited:\n{self.log()[-3000:]}")
        marker = "serving queues"
        text = self.log()
        if marker not in text:
            return False
        if not self.world_id:
            line = next(line for line in text.splitlines() if marker in line)
            self.world_id = line.split("executor world ")[1].split()[0]
        return True

    def wait_serving(self, timeout: float = 30.0) -> Executor:
        wait_for(self.serving, timeout, f"executor {self.pid} serving", step=0.05)
        return self

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def world_ids(coordinator: Coordinator) -> set[str]:
    return {w.id for w in coordinator.find_worlds()}


# -- detection ---------------------------------------------------------------------


def detection(
    url: str, tmp: Path, label: str, settings: dict[str, float], how: str, samples: int
) -> None:
    executors = [Executor(url, tmp, settings) for _ in range(samples)]
    for executor in executors:
        executor.wait_serving()
    with World(url, executor=False, **settings) as observer:
        killed_at: dict[str, float] = {}
        detected: dict[str, float] = {}
        # one at a time, each at a random moment of its heartbeat cycle
        for executor in executors:
            time.sleep(random.uniform(0, settings["heartbeat_interval"]))
            if how == "kill -9":
                # reaped at once, as its service manager would: an unreaped (zombie)
                # process still answers kill(pid, 0), so the pid check could not see it
                executor.kill()
            else:
                executor.signal(signal.SIGSTOP)
            killed_at[executor.world_id] = time.monotonic()
        limit = settings["lease"] + 2 * settings["validity_check_interval"] + 15
        deadline = time.monotonic() + limit
        while len(detected) < len(executors) and time.monotonic() < deadline:
            alive = world_ids(observer.coordinator)
            now = time.monotonic()
            for world_id in killed_at:
                if world_id not in alive and world_id not in detected:
                    detected[world_id] = now - killed_at[world_id]
            time.sleep(0.02)
    for executor in executors:
        executor.kill()
    seconds = sorted(round(s, 2) for s in detected.values())
    emit(
        "detection",
        settings=label,
        how=how,
        heartbeat_s=settings["heartbeat_interval"],
        lease_s=settings["lease"],
        check_every_s=settings["validity_check_interval"],
        samples=len(executors),
        detected=len(detected),
        seconds=seconds,
        max_s=max(seconds) if seconds else None,
    )


# -- recovery of 1,000 orphans -----------------------------------------------------


def orphans(url: str, count: int, action: type[Orphan]) -> None:
    with World(url, auto_execute=False, validity_check_interval=0) as planner:
        plans = [planner.plan(action) for _ in range(count)]
    ids = [p.id for p in plans]
    dead = str(uuid.uuid4())
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(execution_plans)
            .where(execution_plans.c.id.in_(ids))
            .values(state="running", started_at=now)
        )
        for plan in plans:
            connection.execute(
                sa.update(steps)
                .where(
                    steps.c.execution_plan_id == plan.id,
                    steps.c.id == plan.entry_action.run_step_id,
                )
                .values(state="running", started_at=now)
            )
        data = {
            "executor": True,
            "queues": ["default"],
            "meta": {"hostname": "elsewhere.example", "pid": 1},
            "heartbeat_at": (now - timedelta(hours=1)).isoformat(),
        }
        connection.execute(
            sa.insert(coordinator_records).values(
                {"class": "world", "id": dead, "owner_id": dead, "data": data}
            )
        )
        connection.execute(
            sa.insert(coordinator_records),
            [{"class": EXECUTION_LOCK, "id": i, "owner_id": dead, "data": {}} for i in ids],
        )
    with World(url, auto_execute=False, validity_check_interval=0) as world:
        started = time.perf_counter()
        invalidated = world.perform_validity_checks()
        checked = time.perf_counter() - started

        def settled() -> bool:
            with engine.connect() as connection:
                states = connection.execute(
                    sa.select(execution_plans.c.state, sa.func.count())
                    .where(execution_plans.c.id.in_(ids))
                    .group_by(execution_plans.c.state)
                ).all()
            return dict(states) == {"paused": count} or dict(states) == {"stopped": count}

        wait_for(settled, 120, "orphans recovered", step=0.05)
        total = time.perf_counter() - started
    with engine.connect() as connection:
        outcome = connection.execute(
            sa.select(execution_plans.c.state, execution_plans.c.result, sa.func.count())
            .where(execution_plans.c.id.in_(ids))
            .group_by(execution_plans.c.state, execution_plans.c.result)
        ).all()
    engine.dispose()
    emit(
        "recover",
        action=action.__name__,
        plans=count,
        worlds_invalidated=invalidated,
        validity_check_s=round(checked, 2),
        all_settled_s=round(total, 2),
        outcome={f"{s}/{r}": n for s, r, n in outcome},
    )


# -- chaos -------------------------------------------------------------------------


def chaos(url: str, tmp: Path, kills: int, budget: float, pool: int = 3) -> None:
    runs = tmp / "chaos-runs.txt"
    runs.touch()
    executors = [Executor(url, tmp, FAST) for _ in range(pool)]
    for executor in executors:
        executor.wait_serving()
    plan_ids: list[str] = []
    done_kills = 0
    failed_triggers = 0
    deadline = time.monotonic() + budget
    started = time.monotonic()
    with World(url, executor=False, **FAST) as client:
        while done_kills < kills and time.monotonic() < deadline:
            for _ in range(4):
                try:
                    triggered = client.trigger(Mixed, runs=str(runs), spread=0.15)
                    plan_ids.append(triggered.execution_plan_id)
                except Exception:  # e.g. the executor it chose died under it
                    failed_triggers += 1
            time.sleep(random.uniform(0.0, 0.3))
            victim = random.choice(executors)
            victim.kill()
            executors.remove(victim)
            done_kills += 1
            fresh = Executor(url, tmp, FAST)
            executors.append(fresh)
            fresh.wait_serving()
        chaos_s = time.monotonic() - started
        # the last executors stay: every plan must end stopped or paused
        settle_started = time.monotonic()
        engine = sa.create_engine(url)

        def states() -> collections.Counter[str]:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.select(execution_plans.c.id, execution_plans.c.state)
                ).all()
            return collections.Counter(state for _, state in rows)

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: set(states()) <= set(FINAL), 60, "plans settled", step=0.2)
        settle_s = time.monotonic() - settle_started
        with engine.connect() as connection:
            plans = dict(
                connection.execute(sa.select(execution_plans.c.id, execution_plans.c.state)).all()
            )
            outcome = connection.execute(
                sa.select(
                    execution_plans.c.state, execution_plans.c.result, sa.func.count()
                ).group_by(execution_plans.c.state, execution_plans.c.result)
            ).all()
            step_rows = connection.execute(
                sa.select(
                    steps.c.execution_plan_id, steps.c.id, steps.c.action_class, steps.c.state
                ).where(steps.c.phase == "run")
            ).all()
            locks = connection.execute(
                sa.select(coordinator_records.c.id, coordinator_records.c.owner_id).where(
                    coordinator_records.c["class"] != "world"
                )
            ).all()
        alive = world_ids(client.coordinator)
    engine.dispose()
    lost = [p for p in plan_ids if plans.get(p) not in FINAL]
    counts = collections.Counter()
    for line in runs.read_text().splitlines():
        plan_id, step_id, class_name, _world = line.split()
        counts[(plan_id, int(step_id), class_name)] += 1
    non_idempotent = {k: n for k, n in counts.items() if k[2] == "Note"}
    duplicates = sum(1 for n in non_idempotent.values() if n > 1)
    idempotent_reruns = sum(n - 1 for k, n in counts.items() if k[2] == "IdempotentNote" and n > 1)
    step_state = {(p, s): state for p, s, _c, state in step_rows}
    # a committed non-idempotent run (step success) was run exactly once
    committed_twice = sum(
        1
        for (p, s, _c), n in non_idempotent.items()
        if step_state.get((p, s)) == "success" and n != 1
    )
    orphan_locks = [lock for lock in locks if lock.owner_id not in alive]
    emit(
        "chaos",
        kills=done_kills,
        seconds=round(chaos_s, 1),
        plans=len(plan_ids),
        failed_triggers=failed_triggers,
        settle_s=round(settle_s, 1),
        outcome={f"{s}/{r}": n for s, r, n in outcome},
        lost=len(lost),
        lost_examples=[(p, plans.get(p)) for p in lost[:5]],
        step_runs=sum(counts.values()),
        non_idempotent_runs=sum(non_idempotent.values()),
        duplicate_non_idempotent_runs=duplicates,
        committed_runs_run_twice=committed_twice,
        idempotent_reruns=idempotent_reruns,
        locks_of_dead_worlds=len(orphan_locks),
    )
    for executor in executors:
        executor.stop()


# -- zombies -----------------------------------------------------------------------


def snapshot(connection: Any, plan_id: str) -> list[Any]:
    rows: list[Any] = []
    for table in (execution_plans, steps, actions):
        key = table.c.id if table is execution_plans else table.c.execution_plan_id
        rows += [tuple(r) for r in connection.execute(sa.select(table).where(key == plan_id))]
    return rows


def plan_state(engine: sa.Engine, plan_id: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                sa.select(execution_plans.c.state).where(execution_plans.c.id == plan_id)
            ).scalar_one()
        )


def zombies(url: str, tmp: Path, rounds: int) -> None:
    engine = sa.create_engine(url)
    zombie_writes = 0
    reregistered = 0
    taken_over = 0
    attempts = 0
    fenced = 0
    details: list[dict[str, Any]] = []
    with World(url, executor=False, **FAST) as client:
        for index in range(rounds):
            runs = tmp / f"zombie-{index}-runs.txt"
            gate = tmp / f"zombie-{index}-gate"
            zombie = Executor(url, tmp, FAST).wait_serving()
            held = []
            for action in (Held, IdempotentHeld):
                entered = tmp / f"zombie-{index}-{action.__name__}-entered"
                plan_id = client.trigger(
                    action, runs=str(runs), entered=str(entered), gate=str(gate)
                ).execution_plan_id
                wait_for(entered.exists, 20, "held step entered")
                held.append(plan_id)
            other = Executor(url, tmp, FAST).wait_serving()
            zombie.signal(signal.SIGSTOP)
            wait_for(
                lambda z=zombie: z.world_id not in world_ids(client.coordinator),
                30,
                "zombie invalidated",
            )
            # the other executor has the plans: the non-idempotent one paused, the
            # idempotent one running its step again (held at the same gate)
            wait_for(
                lambda h=held: plan_state(engine, h[0]) == "paused",
                20,
                "non-idempotent plan paused",
            )
            wait_for(
                lambda r=runs: len(r.read_text().splitlines()) >= 3, 20, "idempotent step rerun"
            )
            with engine.connect() as connection:
                before = snapshot(connection, held[0])
                last_history = connection.execute(
                    sa.select(sa.func.max(execution_history.c.id))
                ).scalar_one()
            taken_over += 1
            # let the zombie go: its steps return (the gate opens) and it tries to write
            zombie.signal(signal.SIGCONT)
            gate.touch()
            wait_for(
                lambda z=zombie: z.world_id in world_ids(client.coordinator),
                20,
                "zombie registered again",
            )
            reregistered += 1
            wait_for(
                lambda h=held: plan_state(engine, h[1]) in FINAL,
                20,
                "idempotent plan finished",
            )
            # the zombie's steps return: it tries to write, is fenced off, logs it
            with contextlib.suppress(TimeoutError):
                wait_for(lambda z=zombie: z.log().count(FENCED) >= 2, 10, "zombie fenced off")
            fenced += zombie.log().count(FENCED)
            time.sleep(0.5)  # room for any late write of the zombie to (not) land
            with engine.connect() as connection:
                after = snapshot(connection, held[0])
                late = connection.execute(
                    sa.select(
                        execution_history.c.execution_plan_id, execution_history.c.name
                    ).where(
                        execution_history.c.id > last_history,
                        execution_history.c.world_id == zombie.world_id,
                    )
                ).all()
                outputs = [
                    json.loads(o) if isinstance(o, str) else o
                    for o in connection.execute(
                        sa.select(actions.c.output).where(actions.c.execution_plan_id == held[1])
                    ).scalars()
                ]
            attempts += 2
            by_zombie = sum(1 for o in outputs if o.get("world_id") == zombie.world_id)
            writes = len(late) + (before != after) + by_zombie
            zombie_writes += writes
            if writes:
                details.append(
                    {
                        "round": index,
                        "history": [list(r) for r in late],
                        "rows_changed": before != after,
                        "outputs_by_zombie": by_zombie,
                    }
                )
            if os.environ.get("W4_DEBUG"):
                zombie.signal(signal.SIGABRT)
                time.sleep(1)
            zombie.stop()
            other.stop()
    engine.dispose()
    emit(
        "zombie",
        rounds=rounds,
        plans=attempts,
        taken_over_rounds=taken_over,
        reregistered=reregistered,
        plans_fenced_off_in_zombie_logs=fenced,
        zombie_writes=zombie_writes,
        details=details,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--zombies", type=int, default=5)
    parser.add_argument("--budget", type=float, default=540.0)
    parser.add_argument("--only", choices=["detection", "recover", "chaos", "zombie"])
    parser.add_argument("--keep", action="store_true", help="keep the executor logs")
    args = parser.parse_args(argv)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynflow-w4-") as directory:
        tmp = Path(tempfile.mkdtemp(prefix="dynflow-w4-")) if args.keep else Path(directory)
        if args.keep:
            print(f"logs in {tmp}", file=sys.stderr)

        if args.only in (None, "detection"):
            url = fresh_database()
            for label, settings in (("fast", FAST), ("defaults", DEFAULTS)):
                for how in ("kill -9", "SIGSTOP"):
                    detection(url, tmp, label, settings, how, args.samples)
        if args.only in (None, "recover"):
            for action in (Orphan, IdempotentOrphan):
                orphans(fresh_database(), args.plans, action)
        if args.only in (None, "zombie"):
            zombies(fresh_database(), tmp, args.zombies)
        if args.only in (None, "chaos"):
            left = args.budget - (time.monotonic() - began) - 90
            chaos(fresh_database(), tmp, args.kills, max(left, 30.0))
    emit("total", seconds=round(time.monotonic() - began, 1))


if __name__ == "__main__":
    try:
        main()
    finally:
        for started in STARTED:
            started.kill()
