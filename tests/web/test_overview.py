"""The overview: plans by state, steps finished per minute over the last hour (a
grouped query on every database), the actions failing most, world health."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from dynflow import StepState, World
from tests.web.actions import FAILING, Flaky, Two
from tests.web.conftest import MakeClient, paused_plan

FINAL = (StepState.SUCCESS, StepState.SKIPPED, StepState.ERROR, StepState.CANCELLED)


def _ended_per_minute(world: World, plan_ids: list[str]) -> Counter[datetime]:
    found: Counter[datetime] = Counter()
    for plan_id in plan_ids:
        for step in world.persistence.load_execution_plan(plan_id).steps.values():
            if step.ended_at is not None and step.state in FINAL:
                found[step.ended_at.replace(second=0, microsecond=0)] += 1
    return found


def test_steps_finished_per_minute_and_failing_actions_from_the_database(
    any_db_url: str, make_world: Callable[..., World]
) -> None:
    world = make_world(any_db_url)
    plans = [world.trigger(Two, key=f"ok-{i}").finished.result(10).id for i in range(2)]
    key = uuid.uuid4().hex
    failed = [paused_plan(world, key).id, paused_plan(world, key).id]
    FAILING.discard(key)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    counted = world.persistence.steps_finished_per_minute(hour_ago)
    expected = _ended_per_minute(world, plans + failed)
    assert sum(expected.values()) >= 10
    assert counted == dict(expected)
    assert world.persistence.steps_finished_per_minute(datetime.now(UTC) + timedelta(1)) == {}

    failing = world.persistence.failed_steps_by_action(hour_ago)
    assert failing == [(Flaky.class_name(), 2)]
    assert world.persistence.failed_steps_by_action(datetime.now(UTC) + timedelta(1)) == []
    classes = world.persistence.entry_action_classes([*plans, failed[0], "no-such-plan"])
    assert classes == {
        plans[0]: Two.class_name(),
        plans[1]: Two.class_name(),
        failed[0]: Flaky.class_name(),
    }


def test_overview_page_draws_counts_chart_failures_and_worlds(
    client: TestClient, console_world: World
) -> None:
    for i in range(3):
        console_world.trigger(Flaky, key=f"ok-{i}").finished.result(10)
    key = uuid.uuid4().hex
    paused_plan(console_world, key)
    FAILING.discard(key)
    console_world.plan(Flaky, key="later")

    page = client.get("/overview")
    assert page.status_code == 200
    html = page.text
    nav = html.split("<nav", 1)[1].split("</nav>", 1)[0]
    assert nav.index('href="/overview"') < nav.index('href="/"')
    assert 'href="/overview" aria-current="page"' in nav
    counts = dict(re.findall(r'state-(\w+)">\w+</span> <span class="count">(\d+)<', html))
    assert (counts["stopped"], counts["paused"], counts["planned"]) == ("3", "1", "1")
    assert "To review (1)" in html

    bars = re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"><title>[^<]*: (\d+)</title>', html)
    assert len(bars) == 60
    steps = [int(n) for _, n in bars]
    expected = sum(
        1
        for plan in console_world.persistence.find_execution_plans()
        for step in plan.steps.values()
        if step.ended_at is not None and step.state in FINAL
    )
    assert sum(steps) == expected
    tallest = max(steps)
    assert next(float(h) for h, n in bars if int(n) == tallest) == 100.0
    assert f"{expected} step(s) in the last hour" in html

    failing = html.split('<table class="failing">', 1)[1].split("</table>", 1)[0]
    assert f'title="{Flaky.class_name()}">Flaky</span></a></td><td>1</td>' in failing

    health = html.split('<table class="health">', 1)[1].split("</table>", 1)[0]
    assert console_world.id[:8] in health
    assert "alive" in health


def test_overview_calls_a_world_past_its_lease_late(
    console_world: World, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = console_world.coordinator
    record = next(w for w in coordinator.find_worlds() if w.id == console_world.id)
    assert record.lease is not None
    assert record.heartbeat_at is not None
    client = make_client(console_world)
    assert "health-ok" in client.get("/overview").text
    # the console reads the database's clock: past the lease, the world is late
    later = record.heartbeat_at + timedelta(seconds=record.lease + 60)
    monkeypatch.setattr(coordinator, "database_now", lambda: later)
    html = client.get("/overview").text
    assert "health-late" in html
    assert "health-ok" not in html
