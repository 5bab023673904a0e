"""The console's Trigger page: a form for the classes given to
``create_app(triggerable=[...])``, with JSON arguments and CSRF as every POST."""

from __future__ import annotations

from starlette.testclient import TestClient

from dynflow import PlanResult, World
from dynflow.web import NO_AUTH
from tests.support import eventually
from tests.web.conftest import MakeClient, csrf_token
from tests.web.test_inbound import BadPlan, NotListed, Provision


def _form(client: TestClient, **fields: str) -> dict[str, str]:
    return {"csrf_token": csrf_token(client, "/trigger"), **fields}


def test_the_form_triggers_a_listed_class_and_shows_its_plan(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, NO_AUTH, triggerable=[Provision, BadPlan])
    page = client.get("/trigger")
    assert page.status_code == 200
    assert f'<option value="{Provision.class_name()}"' in page.text
    assert NotListed.class_name() not in page.text
    sent = client.post(
        "/trigger",
        data=_form(client, action=Provision.class_name(), args='["web-1"]', kwargs='{"size": 2}'),
    )
    assert sent.status_code == 303
    plan_id = sent.headers["location"].rsplit("/", 1)[-1]
    plan = eventually(
        lambda: (p := console_world.persistence.load_execution_plan(plan_id)).ended_at and p
    )
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output == {"vm": "web-1-2"}
    assert client.get(sent.headers["location"]).status_code == 200


def test_bad_input_is_shown_on_the_form_and_nothing_is_triggered(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, NO_AUTH, triggerable=[Provision, BadPlan])
    name = Provision.class_name()
    for fields, status, message in [
        ({"action": name, "args": "[oops"}, 400, "arguments is not JSON"),
        ({"action": name, "args": '{"a": 1}'}, 400, "arguments must be a JSON array"),
        ({"action": name, "args": '["x"]', "kwargs": "[1]"}, 400, "must be a JSON object"),
        ({"action": NotListed.class_name()}, 404, "cannot be triggered here"),
    ]:
        answer = client.post("/trigger", data=_form(client, **fields))
        assert answer.status_code == status, answer.text
        assert message in answer.text
        if "args" in fields:  # what was typed stays in the form
            assert f">{fields['args'].replace(chr(34), '&#34;')}</textarea>" in answer.text
    assert console_world.persistence.find_execution_plans() == []
    failed = client.post("/trigger", data=_form(client, action=BadPlan.class_name()))
    assert failed.status_code == 409
    assert "cannot plan this" in failed.text
    refused = client.post("/trigger", data={"action": name, "args": '["x"]'})
    assert refused.status_code == 403  # no CSRF token


def test_without_triggerable_classes_the_page_says_how_to_list_them(
    client: TestClient,
) -> None:
    page = client.get("/trigger")
    assert page.status_code == 200
    assert "triggerable=[ActionClass, ...]" in page.text
    assert '<form method="post" action="/trigger"' not in page.text
