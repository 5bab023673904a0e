"""Revert in the console and its JSON API: the button (with its confirmation), the
states shown, a failed revert and its skip button, and the API's rules."""

from __future__ import annotations

import uuid

from starlette.testclient import TestClient

from dynflow import PlanResult, PlanState, StepState, World
from tests.web.actions import REVERT_FAILING, Undone, Waiting
from tests.web.conftest import csrf_token
from tests.web.test_console import message, post


def _stopped(world: World, key: str) -> str:
    plan = world.trigger(Undone, key=key).finished.result(timeout=10)
    assert plan.result is PlanResult.SUCCESS
    return plan.id


def test_the_revert_button_asks_first_and_reverts(console_world: World, client: TestClient) -> None:
    plan_id = _stopped(console_world, uuid.uuid4().hex)
    page = client.get(f"/plans/{plan_id}").text
    assert f'action="/plans/{plan_id}/revert"' in page
    assert 'data-confirm="Revert this plan?' in page  # the console's confirmation step

    html = post(client, f"/plans/{plan_id}/revert", f"/plans/{plan_id}")

    assert message(html) == f"ok: execution plan {plan_id} reverted"
    assert "badge result-reverted" in html
    assert 'class="swatch state-reverted"' in html  # the graph's legend, and its colour
    assert "node state-reverted" in html
    steps = client.get(f"/plans/{plan_id}", params={"tab": "steps"}).text
    assert "badge state-reverted" in steps
    history = client.get(f"/plans/{plan_id}", params={"tab": "history"}).text
    assert "revert execution" in history
    assert f'action="/plans/{plan_id}/revert"' not in html  # nothing left to revert
    plan = console_world.persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.REVERTED)


def test_a_failed_revert_is_shown_and_can_be_skipped(
    console_world: World, client: TestClient
) -> None:
    key = uuid.uuid4().hex
    plan_id = _stopped(console_world, key)
    REVERT_FAILING.add(key)
    try:
        token = csrf_token(client, f"/plans/{plan_id}")
        response = client.post(f"/plans/{plan_id}/revert", data={"csrf_token": token})
    finally:
        REVERT_FAILING.discard(key)
    assert response.status_code == 409  # as any command that did not do what it asked
    html = response.text
    assert message(html).startswith(f"failed: execution plan {plan_id}: revert failed")
    assert "revert failed</span>" in html
    assert "cannot undo" in html
    plan = console_world.persistence.load_execution_plan(plan_id)
    step = next(s for s in plan.steps.values() if s.state is StepState.REVERTING)
    assert f'action="/plans/{plan_id}/steps/{step.id}/skip"' in html

    headers = {"X-CSRF-Token": csrf_token(client)}
    detail = client.get(f"/api/plans/{plan_id}").json()
    assert {s["phase"]: s["revert_failed"] for s in detail["steps"]} == {"plan": False, "run": True}
    resumed = client.post(f"/api/plans/{plan_id}/resume", headers=headers)
    assert resumed.status_code == 200
    assert resumed.json()["plan"]["result"] == "reverted"


def test_the_api_reverts_with_the_rules_of_every_post(
    console_world: World, client: TestClient
) -> None:
    plan_id = _stopped(console_world, uuid.uuid4().hex)
    assert client.post(f"/api/plans/{plan_id}/revert").status_code == 403  # no CSRF token
    token = {"X-CSRF-Token": csrf_token(client)}
    assert client.post("/api/plans/nope/revert", headers=token).status_code == 404

    reverted = client.post(f"/api/plans/{plan_id}/revert", headers=token)

    assert reverted.status_code == 200
    body = reverted.json()
    assert body["ok"] is True
    assert (body["plan"]["state"], body["plan"]["result"]) == ("stopped", "reverted")
    assert "/api/plans/{plan_id}/revert" in client.get("/api/openapi.json").json()["paths"]


def test_the_api_refuses_to_revert_a_running_plan(console_world: World, client: TestClient) -> None:
    triggered = console_world.trigger(Waiting)
    token = {"X-CSRF-Token": csrf_token(client)}
    refused = client.post(f"/api/plans/{triggered.execution_plan_id}/revert", headers=token)
    assert refused.status_code == 409
    assert "only a paused or stopped plan can be reverted" in refused.json()["detail"]
    console_world.halt(triggered.execution_plan_id).result(timeout=10)
