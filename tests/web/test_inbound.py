"""HTTP in: ``POST /api/plans`` triggers listed classes, ``POST .../event`` delivers a
webhook's body to a suspended step, and request bodies have a size limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from dynflow import Action, ConfigurationError, PlanResult, PlanState, World
from dynflow.web import NO_AUTH, TokenAuth, create_app
from tests.support import eventually, suspended_step
from tests.web.conftest import MakeClient, csrf_token

TOKEN = "s3cret-token-for-webhooks"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class Provision(Action):
    def plan(self, name: str, size: int = 1) -> None:
        self.plan_self(name=name, size=size)

    def run(self, event: Any = None) -> None:
        self.output["vm"] = f"{self.input['name']}-{self.input['size']}"


class NotListed(Action):
    def run(self, event: Any = None) -> None:
        pass


class BadPlan(Action):
    def plan(self) -> None:
        raise RuntimeError("cannot plan this")


class AwaitsWebhook(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["received"] = event


@pytest.fixture
def webhooks(console_world: World, make_client: MakeClient) -> TestClient:
    return make_client(
        console_world, TokenAuth(TOKEN), triggerable=[Provision, BadPlan, AwaitsWebhook]
    )


def test_a_listed_action_is_triggered(console_world: World, webhooks: TestClient) -> None:
    answer = webhooks.post(
        "/api/plans",
        json={"action": "Provision", "args": ["web-1"], "kwargs": {"size": 2}},
        headers=BEARER,
    )
    assert answer.status_code == 202, answer.text
    plan_id = answer.json()["execution_plan_id"]
    plan = eventually(
        lambda: (
            (p := console_world.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED
            and p
        )
    )
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output == {"vm": "web-1-2"}

    dotted = webhooks.post(
        "/api/plans", json={"action": Provision.class_name(), "args": ["x"]}, headers=BEARER
    )
    assert dotted.status_code == 202, dotted.text


def test_a_class_not_listed_is_not_found(webhooks: TestClient) -> None:
    for name in ("NotListed", NotListed.class_name(), "os.system"):
        answer = webhooks.post("/api/plans", json={"action": name}, headers=BEARER)
        assert answer.status_code == 404, answer.text
        assert "cannot be triggered here" in answer.json()["detail"]


def test_a_planning_failure_is_a_conflict_naming_the_plan(webhooks: TestClient) -> None:
    answer = webhooks.post("/api/plans", json={"action": "BadPlan"}, headers=BEARER)
    assert answer.status_code == 409
    assert "cannot plan this" in answer.json()["detail"]


def test_bad_trigger_requests(webhooks: TestClient) -> None:
    assert webhooks.post("/api/plans", json={"args": []}, headers=BEARER).status_code == 400
    wrong = webhooks.post("/api/plans", json={"action": "Provision"}, headers=BEARER)
    assert wrong.status_code == 409  # plan() misses its argument: planning failed
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key": "k" * 256}, "key"),
        ({"key": ""}, "key"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": 0}, "deadline"),
        ({"priority": "high"}, "priority"),
        ({"priority": 2**40}, "priority"),
        ({"after": "one-id"}, "after"),
        ({"labels": {"a": 1}}, "labels"),
    ]
    for options, problem in cases:
        answer = webhooks.post(
            "/api/plans", json={"action": "Provision", "args": ["a"], **options}, headers=BEARER
        )
        assert answer.status_code == 400, (options, answer.text)
        assert problem in answer.json()["detail"], answer.text
    missing = webhooks.post(
        "/api/plans",
        json={"action": "Provision", "args": ["a"], "after": ["no-such-plan"]},
        headers=BEARER,
    )
    assert missing.status_code == 404
    assert "no-such-plan does not exist" in missing.json()["detail"]


def test_trigger_options_over_http(console_world: World, webhooks: TestClient) -> None:
    first = webhooks.post(
        "/api/plans",
        json={
            "action": "Provision",
            "args": ["web-1"],
            "key": "order-17",
            "priority": 3,
            "deadline": 600,
            "labels": {"team": "web"},
        },
        headers=BEARER,
    )
    assert first.status_code == 202, first.text
    plan_id = first.json()["execution_plan_id"]
    again = webhooks.post(
        "/api/plans",
        json={"action": "Provision", "args": ["web-2"], "key": "order-17"},
        headers=BEARER,
    )
    assert again.json()["execution_plan_id"] == plan_id
    after = webhooks.post(
        "/api/plans",
        json={"action": "Provision", "args": ["web-3"], "after": [plan_id]},
        headers=BEARER,
    )
    assert after.status_code == 202, after.text
    second_id = after.json()["execution_plan_id"]
    second = eventually(
        lambda: (
            (p := console_world.persistence.load_execution_plan(second_id)).state
            is PlanState.STOPPED
            and p
        )
    )
    assert second.result is PlanResult.SUCCESS

    found = webhooks.get("/api/plans", params={"key": "order-17"}, headers=BEARER).json()
    assert [p["id"] for p in found["items"]] == [plan_id]
    shown = webhooks.get(f"/api/plans/{plan_id}", headers=BEARER).json()
    assert (shown["key"], shown["priority"], shown["labels"]) == ("order-17", 3, {"team": "web"})
    assert shown["deadline_at"] is not None
    assert webhooks.get(f"/api/plans/{second_id}", headers=BEARER).json()["after"] == [plan_id]
    schema = webhooks.get("/api/openapi.json", headers=BEARER).json()
    fields = schema["components"]["schemas"]["TriggerRequest"]["properties"]
    assert {"key", "after", "priority", "deadline", "labels"} <= set(fields)


def test_a_webhook_event_reaches_the_suspended_step(
    console_world: World, webhooks: TestClient
) -> None:
    triggered = console_world.trigger(AwaitsWebhook)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(console_world, plan_id)
    answer = webhooks.post(
        f"/api/plans/{plan_id}/steps/{step_id}/event",
        json={"status": "approved", "by": ["ops"]},
        headers=BEARER,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["delivered"] is True
    plan = triggered.finished.result(10)
    assert plan.entry_action.output == {"received": {"status": "approved", "by": ["ops"]}}

    late = webhooks.post(f"/api/plans/{plan_id}/steps/{step_id}/event", json={}, headers=BEARER)
    assert late.status_code == 409
    assert "not delivered" in late.json()["detail"]
    missing = webhooks.post("/api/plans/no-such-plan/steps/1/event", json={}, headers=BEARER)
    assert missing.status_code == 404


def test_the_same_auth_and_csrf_rules_as_every_post(
    console_world: World, make_client: MakeClient
) -> None:
    locked = make_client(console_world, TokenAuth(TOKEN), triggerable=[Provision])
    assert locked.post("/api/plans", json={"action": "Provision", "args": ["a"]}).status_code == 401
    browser = make_client(console_world, NO_AUTH, triggerable=[Provision])
    body = {"action": "Provision", "args": ["a"]}
    assert browser.post("/api/plans", json=body).status_code == 403  # no CSRF token
    token = csrf_token(browser)
    accepted = browser.post("/api/plans", json=body, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 202, accepted.text


def test_bodies_over_the_limit_get_413(console_world: World, make_client: MakeClient) -> None:
    small = make_client(console_world, TokenAuth(TOKEN), triggerable=[Provision], max_body=200)
    big = {"action": "Provision", "args": ["x" * 500]}
    answer = small.post("/api/plans", json=big, headers=BEARER)
    assert answer.status_code == 413
    assert "larger than 200 bytes" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"action": "Provision", "args": ["'
        for _ in range(10):
            yield b"y" * 50
        yield b'"]}'

    streamed = small.post(
        "/api/plans",
        content=chunks(),
        headers={**BEARER, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    fits = small.post("/api/plans", json={"action": "Provision", "args": ["z"]}, headers=BEARER)
    assert fits.status_code == 202, fits.text


def test_the_openapi_document_lists_both(webhooks: TestClient) -> None:
    paths = webhooks.get("/api/openapi.json", headers=BEARER).json()["paths"]
    assert "post" in paths["/api/plans"]
    assert "post" in paths["/api/plans/{plan_id}/steps/{step_id}/event"]


def test_bad_options_are_refused(console_world: World) -> None:
    with pytest.raises(ConfigurationError, match="expected Action subclasses"):
        create_app(console_world, auth=NO_AUTH, triggerable=[print])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="max_body must be"):
        create_app(console_world, auth=NO_AUTH, max_body=0)
