"""The send-event form of a suspended step, and the worlds page's details."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from dynflow import World
from tests.support import Gate, eventually, suspended_step
from tests.web.actions import GATES, Blocking, Waiting
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
    assert 'default <span class="pool">(0/3)</span>, slow <span class="pool">(0/2)</span>' in row
    assert '<span class="held-count">1</span>' in row
    assert triggered.execution_plan_id[:8] in row
    assert "s ago" in row
    assert "(lease " in row
    api = client.get("/api/worlds").json()
    mine = next(w for w in api if w["id"] == other.id)
    assert mine["pool_sizes"] == {"default": 3, "slow": 2}
    assert mine["plans_held"] == [triggered.execution_plan_id]
    other.halt(triggered.execution_plan_id).result(10)


def test_worlds_page_shows_busy_workers_per_queue_at_each_heartbeat(
    client: TestClient, sqlite_url: str, make_world: Callable[..., World]
) -> None:
    gate = GATES["pool"] = Gate()
    other = make_world(sqlite_url, pool_size=3, queues={"slow": 2}, heartbeat_interval=0.1, lease=5)

    def row() -> str:
        html = client.get("/worlds").text
        return html.split(f'<tr id="world-{other.id}">', 1)[1].split("</tr>", 1)[0]

    def showing(text: str) -> str | None:
        found = row()
        return found if f'<span class="pool">{text}</span>' in found else None

    try:
        triggered = other.trigger(Blocking, key="pool")
        assert gate.entered.wait(10)
        busy = eventually(lambda: showing("(1/3)"))
        assert '<span class="pool">(1/3)</span>' in busy
        assert '<span class="pool">(0/2)</span>' in busy
        mine = next(w for w in client.get("/api/worlds").json() if w["id"] == other.id)
        assert mine["pool_busy"] == {"default": 1, "slow": 0}
        assert mine["pool_sizes"] == {"default": 3, "slow": 2}
    finally:
        gate.open()
    assert triggered.finished.result(10).result == "success"
    idle = eventually(lambda: showing("(0/3)"))
    assert '<span class="pool">(0/2)</span>' in idle


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
