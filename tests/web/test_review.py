"""Review before running: a planned plan is approved (executed) or rejected (halted)
from its page, the JSON API or the command line; who decided is in its history."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dynflow import PlanResult, PlanState, World
from dynflow.cli.main import app
from dynflow.web import BasicAuth, TokenAuth, plan_view
from tests.support import eventually
from tests.web.actions import Flaky
from tests.web.conftest import MakeClient, csrf_token
from tests.web.plan_actions import Big


def _history(world: World, plan_id: str) -> list[str]:
    return [e.name for e in world.persistence.load_execution_plan(plan_id).execution_history]


def test_a_planned_plan_shows_its_inputs_and_the_review_buttons(
    client: TestClient, console_world: World
) -> None:
    plan = console_world.plan(Flaky, key="to-review")
    page = client.get(f"/plans/{plan.id}")
    assert page.status_code == 200
    review = page.text.split('<section class="review"', 1)[1].split("</section>", 1)[0]
    assert '<code>{"key": "to-review"}</code>' in review
    assert f'action="/plans/{plan.id}/execute"' in review
    assert f'action="/plans/{plan.id}/reject"' in review
    assert review.count('name="csrf_token"') == 2
    done = console_world.trigger(Flaky, key="done").finished.result(10)
    assert '<section class="review"' not in client.get(f"/plans/{done.id}").text


def test_approve_from_the_page_records_the_basic_auth_user_then_runs(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, auth=BasicAuth("alice", "secret"), allowed_hosts=["*"])
    client.headers["Authorization"] = "Basic " + base64.b64encode(b"alice:secret").decode()
    plan = console_world.plan(Flaky, key="approve-me")
    token = csrf_token(client, f"/plans/{plan.id}")
    answer = client.post(f"/plans/{plan.id}/execute", data={"csrf_token": token})
    assert answer.status_code == 200, answer.text
    assert f"execution plan {plan.id} approved by alice and executed" in answer.text
    done = eventually(
        lambda: (
            (p := console_world.persistence.load_execution_plan(plan.id)).state is PlanState.STOPPED
            and p
        )
    )
    assert done.result is PlanResult.SUCCESS
    history = _history(console_world, plan.id)
    assert history[0] == "approved by alice"
    assert "start execution" in history[1:]


def test_reject_halts_the_plan_and_records_who(client: TestClient, console_world: World) -> None:
    plan = console_world.plan(Flaky, key="reject-me")
    token = csrf_token(client, f"/plans/{plan.id}")
    refused = client.post(f"/plans/{plan.id}/reject")
    assert refused.status_code == 403
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.PLANNED
    answer = client.post(f"/plans/{plan.id}/reject", data={"csrf_token": token})
    assert answer.status_code == 200, answer.text
    stopped = console_world.persistence.load_execution_plan(plan.id)
    assert (stopped.state, stopped.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert _history(console_world, plan.id)[0] == "rejected by anonymous"
    assert "rejected by anonymous" in answer.text  # the history table on the page
    again = client.post(f"/plans/{plan.id}/execute", data={"csrf_token": token})
    assert again.status_code == 409
    assert "not planned" in again.text


def test_api_execute_with_a_token_records_token_and_is_documented(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, auth=TokenAuth("a-long-token"), allowed_hosts=["*"])
    client.headers["Authorization"] = "Bearer a-long-token"
    plan = console_world.plan(Flaky, key="api")
    answer = client.post(f"/api/plans/{plan.id}/execute")
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    assert _history(console_world, plan.id)[0] == "approved by token"
    assert client.post(f"/api/plans/{plan.id}/execute").status_code == 409
    assert client.post("/api/plans/no-such-plan/execute").status_code == 404
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "post" in paths["/api/plans/{plan_id}/execute"]
    assert "post" in paths["/api/plans/{plan_id}/reject"]


@pytest.fixture
def executor(db_url: str, make_world: Callable[..., World]) -> World:
    return make_world(db_url, connector="database")


def test_cli_execute_and_reject(
    executor: World, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    approved = executor.plan(Flaky, key="cli")
    result = runner.invoke(
        app,
        ["plans", "execute", approved.id, "--database-url", db_url, "--wait", "20"],
        env={"USER": "bob", "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert re.search(rf"plan {approved.id} is stopped/success", result.output)
    assert _history(executor, approved.id)[0] == "approved by bob"

    rejected = executor.plan(Flaky, key="cli-no")
    monkeypatch.delenv("USER", raising=False)
    result = runner.invoke(app, ["plans", "reject", rejected.id, "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert _history(executor, rejected.id)[0] == "rejected by cli"
    assert executor.persistence.load_execution_plan(rejected.id).state is PlanState.STOPPED

    again = runner.invoke(app, ["plans", "execute", rejected.id, "--database-url", db_url])
    assert again.exit_code == 1
    assert "not planned" in again.output


def test_the_review_of_a_big_plan_lists_the_first_inputs_and_counts_the_rest(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.plan(Big, 20)  # 200 actions with a run step
    page = client.get(f"/plans/{plan.id}").text
    review = page.split('<section class="review"', 1)[1].split("</section>", 1)[0]
    assert review.count("<li>") == plan_view.REVIEW_SHOWN
    assert '<code>{"n": "0-0", "payload": ""}</code>' in review
    assert f"and {200 - plan_view.REVIEW_SHOWN} more action(s)" in review
    assert f'href="/plans/{plan.id}?tab=actions">Actions tab</a>' in review
