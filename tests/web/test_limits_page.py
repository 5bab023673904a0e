"""Limits in the console and the command line: the Limits page, GET /api/limits,
``dynflow limits list`` and the reason a step waits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial

from typer.testing import CliRunner

from dynflow import Action, Limit, PlanResult, StepState, World
from dynflow.cli.main import app
from tests.support import eventually, suspended_step
from tests.web.conftest import MakeClient

MakeWorld = Callable[..., World]


class Exclusive(Action):
    """Holds its key while suspended (no worker), until an event ends it."""

    limits = [Limit("page:{name}", concurrency=1)]

    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self, event: object = None) -> None:
        if event is None:
            self.suspend()


def holder_and_waiter(world: World, name: str) -> tuple[str, str]:
    holder = world.trigger(Exclusive, name).execution_plan_id
    suspended_step(world, holder)
    waiter = world.trigger(Exclusive, name).execution_plan_id
    eventually(lambda: [e.state for e in world.persistence.find_limits()] == ["holding", "waiting"])
    return holder, waiter


def finish(world: World, holder: str, waiter: str) -> None:
    world.event(holder, suspended_step(world, holder), "done").result(10)
    world.event(waiter, suspended_step(world, waiter), "done").result(10)
    for plan_id in (holder, waiter):
        eventually(partial(succeeded, world, plan_id))


def succeeded(world: World, plan_id: str) -> bool:
    return world.persistence.load_execution_plan(plan_id).result is PlanResult.SUCCESS


def test_the_limits_page_api_and_plan_page(
    sqlite_url: str, make_world: MakeWorld, make_client: MakeClient
) -> None:
    world = make_world(sqlite_url)
    client = make_client(world)
    name = f"<b>{uuid.uuid4().hex[:8]}</b>"  # escaped, never markup
    holder, waiter = holder_and_waiter(world, name)

    listed = client.get("/api/limits").json()
    assert [(e["key"], e["state"], e["position"]) for e in listed] == [
        (f"page:{name}", "holding", None),
        (f"page:{name}", "waiting", 1),
    ]
    assert [e["execution_plan_id"] for e in listed] == [holder, waiter]
    assert {e["world_id"] for e in listed} == {world.id}
    assert listed[0]["concurrency"] == 1

    html = client.get("/limits").text
    assert 'href="/limits"' in html  # the nav link
    assert "&lt;b&gt;" in html
    assert f"<b>{name[3:-4]}</b>" not in html
    assert html.index(holder) < html.index(waiter)

    steps = client.get(f"/api/plans/{waiter}").json()["steps"]
    run = next(s for s in steps if s["phase"] == "run")
    assert run["state"] == StepState.WAITING
    assert run["waiting_for"] == [f"page:{name}"]
    assert run["waiting_reason"] == f"waiting for limit page:{name}"
    page = client.get(f"/plans/{waiter}").text
    assert "waiting for limit page:&lt;b&gt;" in page

    finish(world, holder, waiter)
    eventually(lambda: client.get("/api/limits").json() == [])
    assert "No step holds or waits for a limit." in client.get("/limits").text


def test_dynflow_limits_list_and_plans_show(db_url: str, make_world: MakeWorld) -> None:
    world = make_world(db_url)
    name = uuid.uuid4().hex[:8]
    holder, waiter = holder_and_waiter(world, name)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, [*args, "--database-url", db_url], env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return result.output

    listed = json.loads(invoke("limits", "list", "--json"))
    assert [(e["state"], e["execution_plan_id"]) for e in listed] == [
        ("holding", holder),
        ("waiting", waiter),
    ]
    text = invoke("limits", "list", "--key", f"page:{name}")
    assert "holding" in text
    assert "waiting" in text
    assert "2 holder(s) and waiter(s)" in text
    assert "0 holder(s)" in invoke("limits", "list", "--key", "no-such-key")
    shown = invoke("plans", "show", waiter)
    assert f"waiting for limit page:{name}" in shown
    detail = json.loads(invoke("plans", "show", waiter, "--json"))
    run = next(s for s in detail["steps"] if s["phase"] == "run")
    assert run["waiting_reason"] == f"waiting for limit page:{name}"
    finish(world, holder, waiter)
