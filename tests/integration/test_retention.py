"""Retention: ``world.clean``, ``World(retention=...)`` and ``dynflow plans clean``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from dynflow import (
    Action,
    ConfigurationError,
    ExecutionError,
    NotFound,
    PlanResult,
    PlanState,
    SubPlan,
    WithSubPlans,
)
from dynflow.cli.main import app
from dynflow.clock import ManualClock
from dynflow.persistence.tables import actions, execution_history, execution_plans, steps
from dynflow.services.retention import RETENTION_LOCK, parse_age
from dynflow.testing import InThreadWorld

DAY = timedelta(days=1)


class Ok(Action):
    def run(self, event: Any = None) -> None:
        self.output["ok"] = True


class Fails(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("broken")


class Family(WithSubPlans, Action):
    def create_sub_plans(self) -> Iterable[SubPlan]:
        return [self.trigger(Ok), self.trigger(Ok)]


class FamilyWithAFailure(WithSubPlans, Action):
    def create_sub_plans(self) -> Iterable[SubPlan]:
        return [self.trigger(Ok), self.trigger(Fails)]


@pytest.fixture
def world(db_url: str) -> Iterator[InThreadWorld]:
    world = InThreadWorld(db_url)
    yield world
    world.terminate()


def ended(world: InThreadWorld, plan_ids: Iterable[str], days_ago: float) -> None:
    """Make plans look as if they stopped ``days_ago`` days ago."""
    when = datetime.now(UTC) - timedelta(days=days_ago)
    with world.persistence.db.write() as connection:
        connection.execute(
            sa.update(execution_plans)
            .where(execution_plans.c.id.in_(list(plan_ids)))
            .values(ended_at=when)
        )


def family_ids(world: InThreadWorld, parent_id: str) -> list[str]:
    children = world.persistence.find_execution_plans(
        filters={"caller_execution_plan_id": parent_id}
    )
    return [parent_id, *(c.id for c in children)]


def rows(world: InThreadWorld, plan_ids: list[str]) -> dict[str, int]:
    """How many rows of each table belong to the plans."""
    counts = {}
    with world.persistence.db.read() as connection:
        for table in (steps, actions, execution_history):
            query = sa.select(sa.func.count()).where(table.c.execution_plan_id.in_(plan_ids))
            counts[table.name] = connection.execute(query).scalar_one()
        query = sa.select(sa.func.count()).where(execution_plans.c.id.in_(plan_ids))
        counts[execution_plans.name] = connection.execute(query).scalar_one()
    return counts


def exists(world: InThreadWorld, plan_id: str) -> bool:
    try:
        world.persistence.load_execution_plan(plan_id)
    except NotFound:
        return False
    return True


def test_old_stopped_plans_go_with_their_sub_plans_and_everything_they_own(
    world: InThreadWorld,
) -> None:
    old = world.trigger(Ok).finished.result(10).id
    parent = world.trigger(Family).finished.result(10).id
    old_family = family_ids(world, parent)
    assert len(old_family) == 3
    recent = world.trigger(Ok).finished.result(10).id
    ended(world, [old, *old_family], days_ago=40)
    assert rows(world, [old, *old_family])["dynflow_steps"] > 0

    assert world.clean(timedelta(days=30)) == 4  # the plan, the parent and its two children

    assert rows(world, [old, *old_family]) == dict.fromkeys(
        (
            "dynflow_steps",
            "dynflow_actions",
            "dynflow_execution_history",
            "dynflow_execution_plans",
        ),
        0,
    )
    assert exists(world, recent)
    assert world.clean(timedelta(days=30)) == 0


def test_plans_not_stopped_and_families_with_a_child_not_stopped_stay(world: InThreadWorld) -> None:
    paused = world.trigger(Fails).finished.result(10)
    assert paused.state is PlanState.PAUSED
    parent = world.trigger(FamilyWithAFailure).finished.result(10)
    family = family_ids(world, parent.id)
    failed_child = next(
        p
        for p in map(world.persistence.load_execution_plan, family[1:])
        if p.result.value == "error"
    )
    assert failed_child.state is PlanState.PAUSED
    world.halt(parent.id).result(10)  # the parent stops; its failed child stays paused
    assert world.persistence.load_execution_plan(parent.id).state is PlanState.STOPPED
    ended(world, [paused.id, *family], days_ago=40)

    assert world.clean(timedelta(days=30)) == 0
    assert all(exists(world, plan_id) for plan_id in [paused.id, *family])

    world.halt(failed_child.id).result(10)  # now the whole family stopped
    ended(world, family, days_ago=40)
    assert world.clean(timedelta(days=30)) == 3
    assert not any(exists(world, plan_id) for plan_id in family)
    assert exists(world, paused.id)


def test_only_the_results_asked_for_and_in_batches(world: InThreadWorld) -> None:
    succeeded = [world.trigger(Ok).finished.result(10).id for _ in range(5)]
    halted = world.trigger(Fails).finished.result(10).id
    world.halt(halted).result(10)
    ended(world, [*succeeded, halted], days_ago=2)

    assert world.retention.clean(DAY, ["error"], dry_run=True) == 1
    assert exists(world, halted)
    assert world.clean(DAY, results=[PlanResult.ERROR]) == 1
    assert not exists(world, halted)
    assert all(exists(world, plan_id) for plan_id in succeeded)

    assert world.retention.clean(DAY, batch_size=2) == 5  # three batches
    assert not any(exists(world, plan_id) for plan_id in succeeded)


def test_an_aware_datetime_is_a_cut_off(world: InThreadWorld) -> None:
    plan = world.trigger(Ok).finished.result(10)
    assert plan.ended_at is not None
    assert world.clean(plan.ended_at) == 0  # ended at, not before
    assert world.clean(plan.ended_at + timedelta(seconds=1)) == 1


def test_one_world_cleans_at_a_time(world: InThreadWorld) -> None:
    world.coordinator.acquire(RETENTION_LOCK, "clean")
    other = InThreadWorld(world.persistence.url, migrate=False)
    try:
        with pytest.raises(ExecutionError, match="cleaning old plans already: try again"):
            other.retention.clean(DAY)
    finally:
        other.terminate()
        world.coordinator.release(RETENTION_LOCK, "clean")


@pytest.mark.parametrize(
    ("older_than", "named"),
    [
        (datetime(2026, 1, 1), "naive datetime"),
        (-DAY, "must not be negative"),
        ("30d", "timedelta or an aware datetime"),
    ],
)
def test_a_bad_cut_off_is_refused(world: InThreadWorld, older_than: Any, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        world.clean(older_than)


def test_an_unknown_result_is_refused(world: InThreadWorld) -> None:
    with pytest.raises(ConfigurationError, match="unknown plan result 'bogus': use one of"):
        world.clean(DAY, results=["bogus"])


def test_retention_cleans_periodically(sqlite_url: str) -> None:
    clock = ManualClock(utc_start=datetime.now(UTC))
    world = InThreadWorld(
        sqlite_url,
        clock=clock,
        retention=DAY,
        retention_interval=3600,
        heartbeat_interval=600,
        lease=1800,
        validity_check_interval=0,
    )
    try:
        old, recent = (world.trigger(Ok).finished.result(10).id for _ in range(2))
        ended(world, [old], days_ago=2)
        clock.advance(3599)
        assert exists(world, old)  # not yet its time
        clock.advance(1)
        assert not exists(world, old)
        assert exists(world, recent)
    finally:
        world.terminate()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retention": 30}, "retention must be a positive timedelta"),
        ({"retention": -DAY}, "retention must be a positive timedelta"),
        ({"retention_interval": 0}, "retention_interval must be > 0"),
    ],
)
def test_bad_retention_settings_are_refused(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        InThreadWorld("sqlite://", **options)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)]
)
def test_ages_read_by_the_command_line(text: str, seconds: float) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


def flat(output: str) -> str:
    """The words of a command's output, without the frame rich draws around errors."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def test_dynflow_plans_clean(sqlite_url: str) -> None:
    world = InThreadWorld(sqlite_url)
    try:
        plans = [world.trigger(Ok).finished.result(10).id for _ in range(3)]
        ended(world, plans, days_ago=31)
    finally:
        world.terminate()
    runner = CliRunner()
    args = ["plans", "clean", "--older-than", "30d", "--database-url", sqlite_url]

    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 3 plan(s)" in dry.output
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "deleted 3 plan(s)" in done.output
    again = runner.invoke(app, args)
    assert "deleted 0 plan(s)" in again.output

    for bad in (["--older-than", "30"], ["--older-than", "soon"]):
        refused = runner.invoke(app, ["plans", "clean", *bad, "--database-url", sqlite_url])
        assert refused.exit_code == 2
        assert "use a number and a unit, e.g. 30d" in flat(refused.output)
    refused = runner.invoke(app, [*args, "--result", "bogus"])
    assert refused.exit_code == 2
    assert "unknown plan result 'bogus'" in flat(refused.output)
