"""The plans list: its columns, filters kept in the URL, bulk resume/cancel in one POST
(CSRF checked, a report per plan) and the review queue."""

from __future__ import annotations

import re
import uuid

from starlette.testclient import TestClient

from dynflow import PlanState, World
from dynflow.web import create_app
from tests.support import suspended_step
from tests.web.actions import FAILING, Flaky, Waiting
from tests.web.conftest import ORIGIN, csrf_token, paused_plan


def _rows(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def test_columns_show_action_label_badge_relative_start_and_duration(
    client: TestClient, console_world: World
) -> None:
    done = console_world.trigger(Flaky, key="ok").finished.result(10)
    page = client.get("/")
    assert page.status_code == 200
    [row] = _rows(page.text)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert len(cells) == 6
    assert f'value="{done.id}"' in cells[0]
    assert f'title="{Flaky.class_name()}">Flaky<' in cells[1]
    assert done.label in cells[2]
    assert 'class="badge state-stopped result-success"' in cells[3]
    assert done.started_at is not None
    absolute = done.started_at.strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf'<time datetime="[^"]+" title="{absolute} UTC">\d+ s ago</time>', cells[4])
    assert re.search(r"\d+\.\d\d s", cells[5])


def test_filters_live_in_the_url_and_every_link_keeps_them(
    client: TestClient, console_world: World
) -> None:
    console_world.trigger(Flaky, key="ok").finished.result(10)
    page = client.get("/", params={"state": "stopped", "text": "flaky", "started_after": ""})
    assert page.status_code == 200
    assert 'name="text" value="flaky"' in page.text
    assert '<option value="stopped" selected>' in page.text
    sort_link = re.search(r'href="/\?([^"]*sort=label[^"]*)"', page.text)
    assert sort_link is not None
    assert "state=stopped" in sort_link.group(1)
    assert "text=flaky" in sort_link.group(1)
    bulk = re.search(r'<form method="post" action="/plans/bulk\?([^"]*)"', page.text)
    assert bulk is not None
    assert "state=stopped" in bulk.group(1)


def test_bulk_resume_reports_per_plan_and_keeps_the_filters(
    client: TestClient, console_world: World
) -> None:
    keys = [uuid.uuid4().hex for _ in range(3)]
    paused = [paused_plan(console_world, key) for key in keys]
    finished = console_world.trigger(Flaky, key="fine").finished.result(10)
    for key in keys:
        FAILING.discard(key)
    token = csrf_token(client)
    ids = [p.id for p in paused] + [finished.id, "no-such-plan"]
    answer = client.post(
        "/plans/bulk?state=paused&text=",
        data={"csrf_token": token, "command": "resume", "plan_id": ids},
    )
    assert answer.status_code == 200, answer.text
    assert "resumed 3, 1 not paused, 1 not found" in answer.text
    for plan in paused:
        assert re.search(rf"<code>{plan.id[:8]}</code></a> resumed", answer.text)
        stored = console_world.persistence.load_execution_plan(plan.id)
        assert stored.state in (PlanState.RUNNING, PlanState.STOPPED)
    assert f"<code>{finished.id[:8]}</code></a> not paused (stopped)" in answer.text
    assert '<option value="paused" selected>' in answer.text  # the filters stay


def test_bulk_cancel_cancels_running_plans_only(client: TestClient, console_world: World) -> None:
    waiting = console_world.trigger(Waiting)
    suspended_step(console_world, waiting.execution_plan_id)
    key = uuid.uuid4().hex
    paused = paused_plan(console_world, key)
    FAILING.discard(key)
    answer = client.post(
        "/plans/bulk",
        data={
            "csrf_token": csrf_token(client),
            "command": "cancel",
            "plan_id": [waiting.execution_plan_id, paused.id],
        },
    )
    assert answer.status_code == 200, answer.text
    assert "cancelled 1, 1 not running" in answer.text
    plan = waiting.finished.result(10)
    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert console_world.persistence.load_execution_plan(paused.id).state is PlanState.PAUSED


def test_bulk_needs_the_csrf_token_and_a_known_command(
    client: TestClient, console_world: World
) -> None:
    key = uuid.uuid4().hex
    paused = paused_plan(console_world, key)
    FAILING.discard(key)
    refused = client.post("/plans/bulk", data={"command": "resume", "plan_id": paused.id})
    assert refused.status_code == 403
    wrong = client.post(
        "/plans/bulk", data={"csrf_token": "forged", "command": "resume", "plan_id": paused.id}
    )
    assert wrong.status_code == 403
    assert console_world.persistence.load_execution_plan(paused.id).state is PlanState.PAUSED
    token = csrf_token(client)
    unknown = client.post(
        "/plans/bulk", data={"csrf_token": token, "command": "delete", "plan_id": paused.id}
    )
    assert unknown.status_code == 400
    empty = client.post("/plans/bulk", data={"csrf_token": token, "command": "resume"})
    assert empty.status_code == 400
    assert "select at least one plan" in empty.text


def test_review_queue_counts_planned_plans_and_lists_them(
    client: TestClient, console_world: World
) -> None:
    first = console_world.plan(Flaky, key="a")
    second = console_world.plan(Flaky, key="b")
    console_world.trigger(Flaky, key="c").finished.result(10)
    page = client.get("/")
    link = re.search(r'<a href="(/\?state=planned)">To review \((\d+)\)</a>', page.text)
    assert link is not None
    assert link.group(2) == "2"
    queue = client.get(link.group(1).replace("&amp;", "&"))
    assert queue.status_code == 200
    ids = re.findall(r'name="plan_id" value="([^"]+)"', queue.text)
    assert sorted(ids) == sorted([first.id, second.id])


def test_api_plan_items_name_their_entry_action(client: TestClient, console_world: World) -> None:
    plan = console_world.trigger(Flaky, key="ok").finished.result(10)
    [item] = client.get("/api/plans").json()["items"]
    assert (item["id"], item["action_class"]) == (plan.id, Flaky.class_name())


def test_bulk_from_another_origin_is_refused(console_world: World) -> None:
    client = TestClient(create_app(console_world, auth=lambda r: True), base_url=ORIGIN)
    with client:
        token = csrf_token(client)
        answer = client.post(
            "/plans/bulk",
            data={"csrf_token": token, "command": "resume", "plan_id": "x"},
            headers={"Origin": "http://evil.example"},
        )
    assert answer.status_code == 403
