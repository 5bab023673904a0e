"""The send-event form of a suspended step, and the worlds page's details."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from dynflow import World
from tests.support import suspended_step
from tests.web.actions import Waiting
from tests.web.conftest import MakeClient, csrf_token


def test_send_event_form_delivers_json_to_a_suspended_step(
    client: TestClient, console_world: World
) -> None:
    triggered = console_world.trigger(Waiting)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(console_world, plan_id)
    page = client.get(f"/plans/{plan_id}")
    action = f'action="/plans/{plan_id}/steps/{step_id}/event"'
    assert action in page.text
    assert f'<label for="event-{step_id}">' in page.text
    token = csrf_token(client, f"/plans/{plan_id}")

    bad = client.post(
        f"/plans/{plan_id}/steps/{step_id}/event",
        data={"csrf_token": token, "payload": "{not json"},
    )
    assert bad.status_code == 409
    assert "the event is not JSON" in bad.text
    assert "Traceback" not in bad.text
    assert (
        client.post(f"/plans/{plan_id}/steps/{step_id}/event", data={"payload": "{}"}).status_code
        == 403
    )

    sent = client.post(
        f"/plans/{plan_id}/steps/{step_id}/event",
        data={"csrf_token": token, "payload": '{"approved": true}'},
    )
    assert sent.status_code == 200, sent.text
    assert f"event delivered to step {step_id}" in sent.text
    plan = triggered.finished.result(10)
    assert (plan.state, plan.result) == ("stopped", "success")
    run = plan.steps[step_id]
    assert plan.action(run.action_id).output["event"] == {"approved": True}
    assert action not in client.get(f"/plans/{plan_id}").text  # no longer suspended


def test_worlds_page_shows_pools_heartbeat_lease_and_plans_held(
    client: TestClient, console_world: World, sqlite_url: str, make_world: Callable[..., World]
) -> None:
    other = make_world(sqlite_url, pool_size=3, queues={"slow": 2})
    triggered = other.trigger(Waiting)
    suspended_step(other, triggered.execution_plan_id)
    html = client.get("/worlds").text
    row = html.split(f'<tr id="world-{other.id}">', 1)[1].split("</tr>", 1)[0]
    assert "default (3), slow (2)" in row
    assert '<span class="held-count">1</span>' in row
    assert triggered.execution_plan_id[:8] in row
    assert "s ago" in row
    assert "(lease " in row
    assert "executors do not publish how many are busy" in html
    api = client.get("/api/worlds").json()
    mine = next(w for w in api if w["id"] == other.id)
    assert mine["pool_sizes"] == {"default": 3, "slow": 2}
    assert mine["plans_held"] == [triggered.execution_plan_id]
    other.halt(triggered.execution_plan_id).result(10)


def test_the_plan_page_of_a_client_world_console_reviews_too(
    console_world: World, make_client: MakeClient, sqlite_url: str, make_world: Callable[..., World]
) -> None:
    viewer = make_world(sqlite_url, executor=False)
    client = make_client(viewer)
    plan = console_world.plan(Waiting)
    token = csrf_token(client, f"/plans/{plan.id}")
    answer = client.post(f"/plans/{plan.id}/reject", data={"csrf_token": token})
    assert answer.status_code == 200, answer.text
    history = [e.name for e in viewer.persistence.load_execution_plan(plan.id).execution_history]
    assert history[0] == "rejected by anonymous"
