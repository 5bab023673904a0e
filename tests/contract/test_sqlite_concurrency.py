"""SQLite, the embedded default, under concurrency: never "database is locked"."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import Action, ExecutionPlan, PlanResult, PlanState, StepState, Triggered, World
from dynflow.persistence import open_persistence
from dynflow.persistence.tables import execution_plans

MakeWorld = Callable[..., World]


class Hop(Action):
    def plan(self, n: Any) -> None:
        self.plan_self(n=n)

    def run(self, event: Any = None) -> None:
        self.output["n"] = self.input["n"] + 1


class Chain(Action):
    """Five steps: a hop, two hops in concurrence on its output, its own run, a finalize."""

    def plan(self, index: int) -> None:
        with self.sequence():
            first = self.plan_action(Hop, index)
            with self.concurrence():
                second = self.plan_action(Hop, first.output["n"])
                self.plan_action(Hop, first.output["n"])
            self.plan_self(index=index, result=second.output["n"])

    def run(self, event: Any = None) -> None:
        self.output["result"] = self.input["result"]

    def finalize(self) -> None:
        assert self.output["result"] == self.input["index"] + 2


@pytest.fixture
def warnings_and_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING)
    yield caplog
    assert "database is locked" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def sqlite_path(url: str) -> str:
    database = sa.make_url(url).database
    assert database
    return database


def trigger_from_threads(
    worlds: list[World], count: int, threads: int
) -> list[tuple[int, World, Triggered]]:
    """Trigger ``count`` chains at once from ``threads`` threads, spread over ``worlds``."""
    start = threading.Barrier(threads)

    def trigger_batch(batch: int) -> list[tuple[int, World, Triggered]]:
        start.wait()
        triggered = []
        for index in range(batch, count, threads):
            world = worlds[index % len(worlds)]
            triggered.append((index, world, world.trigger(Chain, index)))
        return triggered

    with ThreadPoolExecutor(threads) as pool:
        batches = list(pool.map(trigger_batch, range(threads)))
    return sorted((item for batch in batches for item in batch), key=lambda item: item[0])


def assert_succeeded(plan: ExecutionPlan, index: int) -> None:
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    assert all(step.state is StepState.SUCCESS for step in plan.steps.values())
    assert plan.errors == []
    assert plan.entry_action.output == {"result": index + 2}


def test_a_hundred_plans_from_ten_threads_all_succeed(
    sqlite_url: str, make_world: MakeWorld, warnings_and_errors: pytest.LogCaptureFixture
) -> None:
    world = make_world(sqlite_url)

    triggered = trigger_from_threads([world], count=100, threads=10)
    finished = [(index, t.finished.result(30)) for index, _, t in triggered]

    for index, plan in finished:
        assert_succeeded(plan, index)
    reader = open_persistence(sqlite_url)
    try:
        assert reader.find_execution_plan_counts() == 100
        assert reader.find_execution_plan_counts({"state": "stopped", "result": "success"}) == 100
        for index, plan in finished[::10]:
            assert_succeeded(reader.load_execution_plan(plan.id), index)
    finally:
        reader.close()


def test_two_worlds_in_one_process_share_one_file(
    sqlite_url: str, make_world: MakeWorld, warnings_and_errors: pytest.LogCaptureFixture
) -> None:
    first = make_world(sqlite_url)
    second = make_world(sqlite_url)
    assert {w.id for w in first.coordinator.find_worlds(active_executors_only=True)} == {
        first.id,
        second.id,
    }

    triggered = trigger_from_threads([first, second], count=40, threads=4)

    for index, world, t in triggered:
        plan = t.finished.result(30)
        assert_succeeded(plan, index)
        assert {h.world_id for h in plan.execution_history} == {world.id}
    # each world reads what the other wrote
    assert first.persistence.find_execution_plan_counts({"result": "success"}) == 40
    theirs = triggered[1][2].execution_plan_id  # run by the second world
    assert_succeeded(first.persistence.load_execution_plan(theirs), 1)


def test_readers_read_while_the_executor_writes(
    sqlite_url: str, make_world: MakeWorld, warnings_and_errors: pytest.LogCaptureFixture
) -> None:
    world = make_world(sqlite_url)
    reader = open_persistence(sqlite_url)
    plain = sqlite3.connect(sqlite_path(sqlite_url), timeout=5, check_same_thread=False)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        planned = world.plan(Chain, 0)

        # a write transaction left open does not block readers: they see the last commit
        with world.persistence.db.write() as connection:
            connection.execute(
                sa.update(execution_plans)
                .where(execution_plans.c.id == planned.id)
                .values(label="uncommitted")
            )
            started = time.monotonic()
            assert reader.load_execution_plan(planned.id).label == "Chain"
            assert plain.execute("SELECT label FROM dynflow_execution_plans").fetchall() == [
                ("Chain",)
            ]
            assert time.monotonic() - started < 2  # not waiting on the busy timeout
            connection.rollback()

        # and readers keep reading while plans execute
        reads: list[int] = []
        done = threading.Event()
        problems: list[BaseException] = []

        def read() -> None:
            try:
                while not done.is_set():
                    plans = reader.find_execution_plans(per_page=20)
                    if plans:
                        assert plans[0].steps  # details load lazily, from another connection
                    (count,) = plain.execute(
                        "SELECT COUNT(*) FROM dynflow_execution_plans"
                    ).fetchone()
                    reads.append(count)
            except BaseException as exc:
                problems.append(exc)

        thread = threading.Thread(target=read)
        thread.start()
        try:
            triggered = trigger_from_threads([world], count=30, threads=3)
            for index, _, t in triggered:
                assert_succeeded(t.finished.result(30), index)
        finally:
            done.set()
            thread.join(10)
        assert problems == []
        assert reads
        assert reads == sorted(reads)  # a reader never sees committed plans disappear
        assert reader.find_execution_plan_counts({"result": "success"}) == 30
    finally:
        plain.close()
        reader.close()
