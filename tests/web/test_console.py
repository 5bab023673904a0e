"""The console's pages and JSON API over a real world: lists, details, commands."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from dynflow import PlanResult, PlanState, StepState, World
from dynflow.clock import ManualClock
from dynflow.web import NO_AUTH, create_app
from tests.support import eventually
from tests.web.actions import FAILING, Flaky, Retried, Two, Waiting
from tests.web.conftest import MakeClient, csrf_token, paused_plan


def post(client: TestClient, path: str, page: str = "/") -> str:
    """Submit a page's form to ``path`` as a browser does; the response text."""
    token = csrf_token(client, page)
    response = client.post(path, data={"csrf_token": token})
    assert response.status_code == 200, response.text
    return response.text


def message(html: str) -> str:
    found = re.search(r'<p class="message (ok|failed)" role="status">(.*?)</p>', html, re.S)
    assert found is not None, html
    return f"{found.group(1)}: {found.group(2)}"


# -- plans list -----------------------------------------------------------------------


def test_plans_list_filters_counts_and_pages(console_world: World, client: TestClient) -> None:
    done = [console_world.trigger(Flaky, key=f"ok-{i}") for i in range(3)]
    for triggered in done:
        triggered.finished.result(timeout=10)
    paused = paused_plan(console_world, uuid.uuid4().hex)

    listing = client.get("/api/plans", params={"per_page": 2}).json()
    assert listing["total"] == 4
    assert listing["pages"] == 2
    assert len(listing["items"]) == 2
    assert listing["counts"]["stopped"] == 3
    assert listing["counts"]["paused"] == 1
    second = client.get("/api/plans", params={"per_page": 2, "page": 2}).json()
    ids = {p["id"] for p in listing["items"]} | {p["id"] for p in second["items"]}
    assert len(ids) == 4

    only_paused = client.get("/api/plans", params={"state": "paused"}).json()
    assert [p["id"] for p in only_paused["items"]] == [paused.id]
    errors = client.get("/api/plans", params={"result": "success", "label": "Flaky"}).json()
    assert errors["total"] == 3

    page = client.get("/", params={"state": "paused", "per_page": 1}).text
    assert f"/plans/{paused.id}" in page
    assert done[0].execution_plan_id not in page
    first = client.get("/", params={"per_page": 2}).text
    assert 'rel="next"' in first
    assert "page=2" in first


# -- plan detail and commands ---------------------------------------------------------


def test_plan_page_shows_header_steps_flow_and_history(
    console_world: World, client: TestClient
) -> None:
    key = uuid.uuid4().hex
    FAILING.add(f"{key}-b")
    plan = console_world.trigger(Two, key).finished.result(timeout=10)
    assert plan.state is PlanState.PAUSED
    html = client.get(f"/plans/{plan.id}").text
    assert "badge state-paused" in html
    assert "<progress" in html
    # the run flow as a graph: a node per run step, an edge from the first step to
    # each branch of the concurrence that follows it
    run = {
        plan.action(s.action_id).input["key"]: s.id
        for s in plan.steps.values()
        if str(s.phase) == "run"
    }
    assert html.count('<g class="node state-success"') == 2
    assert html.count('<g class="node state-error"') == 1
    edges = re.findall(r'<path class="edge flow" data-from="s(\d+)" data-to="s(\d+)"', html)
    assert sorted((int(a), int(b)) for a, b in edges) == sorted(
        [(run[key], run[f"{key}-a"]), (run[key], run[f"{key}-b"])]
    )
    assert f"{key}-b is still failing" in html
    assert "<summary>Backtrace</summary>" in html
    assert "actions.py" in html  # a frame of the step's own backtrace
    assert "Skip this step" in html
    assert "/resume" in html
    history = client.get(f"/plans/{plan.id}", params={"tab": "history"}).text
    assert "start execution" in history
    assert console_world.id in history

    detail = client.get(f"/api/plans/{plan.id}").json()
    assert detail["run_flow"]["kind"] == "sequence"
    assert [f["kind"] for f in detail["run_flow"]["flows"]] == ["atom", "concurrence"]
    failed = [s for s in detail["steps"] if s["state"] == "error"]
    assert failed[0]["error"]["exception_class"] == "RuntimeError"
    assert failed[0]["error"]["backtrace"]
    assert failed[0]["input"] == {"key": f"{key}-b"}
    assert failed[0]["queue"] == "default"
    assert detail["execution_history"][0]["world_id"] == console_world.id
    FAILING.discard(f"{key}-b")


def test_a_retried_step_shows_its_attempts_next_attempt_and_errors(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    clock = ManualClock(utc_start=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    world = make_world(sqlite_url, clock=clock)
    client = make_client(world)
    key = uuid.uuid4().hex
    FAILING.add(key)
    triggered = world.trigger(Retried, key=key)
    plan_id = triggered.execution_plan_id

    def run_step() -> dict[str, object]:
        steps = client.get(f"/api/plans/{plan_id}").json()["steps"]
        step: dict[str, object] = next(s for s in steps if s["phase"] == "run")
        return step

    eventually(lambda: run_step()["state"] == "waiting")
    step_id = str(run_step()["id"])
    html = client.get(f"/plans/{plan_id}", params={"step": step_id}).text
    assert "attempt 1 of 3" in html
    assert "next attempt at 2030-01-02 03:05:05 UTC" in html
    assert "Last error" in html
    assert f"{key} refused" in html
    step = run_step()
    assert (step["attempts"], step["max_attempts"]) == (1, 3)
    assert str(step["next_attempt_at"]).startswith("2030-01-02T03:05:05")
    assert [e["message"] for e in step["errors"]] == [f"{key} refused"]  # type: ignore[attr-defined]

    FAILING.discard(key)
    clock.advance(60)
    assert triggered.finished.result(10).result is PlanResult.SUCCESS
    html = client.get(f"/plans/{plan_id}", params={"step": step_id}).text
    assert "attempt 2 of 3" in html
    assert "next attempt at" not in html
    assert "Errors of retried attempts" in html
    step = run_step()
    assert (step["attempts"], step["next_attempt_at"], step["error"]) == (2, None, None)
    assert len(step["errors"]) == 1  # type: ignore[arg-type]


def test_resume_a_paused_plan_from_its_page(console_world: World, client: TestClient) -> None:
    key = uuid.uuid4().hex
    plan = paused_plan(console_world, key)
    FAILING.discard(key)
    html = post(client, f"/plans/{plan.id}/resume", f"/plans/{plan.id}")
    assert message(html) == f"ok: execution plan {plan.id} resumed: now stopped/success"
    reloaded = console_world.persistence.load_execution_plan(plan.id)
    assert (reloaded.state, reloaded.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


def test_resume_through_the_api(console_world: World, client: TestClient) -> None:
    key = uuid.uuid4().hex
    plan = paused_plan(console_world, key)
    FAILING.discard(key)
    token = csrf_token(client)
    answer = client.post(f"/api/plans/{plan.id}/resume", headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    assert answer.json()["plan"]["state"] == "stopped"
    assert answer.json()["plan"]["result"] == "success"

    again = client.post(f"/api/plans/{plan.id}/resume", headers={"X-CSRF-Token": token})
    assert again.status_code == 409
    assert "only a plan that is paused" in again.json()["detail"]


def test_resume_refused_on_the_page_shows_why(console_world: World, client: TestClient) -> None:
    plan = console_world.trigger(Flaky, key="fine").finished.result(timeout=10)
    token = csrf_token(client)
    response = client.post(f"/plans/{plan.id}/resume", data={"csrf_token": token})
    assert response.status_code == 409
    assert "only a plan that is paused" in message(response.text)


def test_skip_a_failed_step_then_resume_ends_with_warning(
    console_world: World, client: TestClient
) -> None:
    key = uuid.uuid4().hex
    plan = paused_plan(console_world, key)
    step_id = next(s.id for s in plan.steps.values() if s.state is StepState.ERROR)
    html = post(client, f"/plans/{plan.id}/steps/{step_id}/skip", f"/plans/{plan.id}")
    assert "skipped: resume" in message(html)
    assert console_world.persistence.load_execution_plan(plan.id).steps[step_id].state == "skipped"

    token = csrf_token(client)
    resumed = client.post(f"/api/plans/{plan.id}/resume", headers={"X-CSRF-Token": token})
    assert resumed.json()["plan"]["result"] == "warning"
    FAILING.discard(key)


def test_skip_through_the_api_refuses_unknown_and_healthy_steps(
    console_world: World, client: TestClient
) -> None:
    key = uuid.uuid4().hex
    plan = paused_plan(console_world, key)
    token = {"X-CSRF-Token": csrf_token(client)}
    plan_step = next(s.id for s in plan.steps.values() if s.state is StepState.SUCCESS)
    assert client.post(f"/api/plans/{plan.id}/steps/999/skip", headers=token).status_code == 404
    healthy = client.post(f"/api/plans/{plan.id}/steps/{plan_step}/skip", headers=token)
    assert healthy.status_code == 409
    failed = next(s.id for s in plan.steps.values() if s.state is StepState.ERROR)
    skipped = client.post(f"/api/plans/{plan.id}/steps/{failed}/skip", headers=token)
    assert skipped.status_code == 200
    assert skipped.json()["plan"]["state"] == "paused"
    FAILING.discard(key)


def test_halt_a_paused_plan(console_world: World, client: TestClient) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    html = post(client, f"/plans/{plan.id}/halt", f"/plans/{plan.id}")
    assert message(html) == f"ok: execution plan {plan.id} halted: now stopped/error"
    assert '<span class="badge state-stopped" data-live="state">stopped</span>' in html
    history = client.get(f"/plans/{plan.id}", params={"tab": "history"}).text
    assert "halt execution" in history


def test_cancel_a_running_plan_through_page_and_api(
    console_world: World, client: TestClient
) -> None:
    triggered = console_world.trigger(Waiting)
    plan_id = triggered.execution_plan_id

    def suspended() -> bool:
        plan = console_world.persistence.load_execution_plan(plan_id)
        return any(s.state is StepState.SUSPENDED for s in plan.steps.values())

    eventually(suspended)
    html = post(client, f"/plans/{plan_id}/cancel", f"/plans/{plan_id}")
    assert message(html).startswith("ok: execution plan")
    plan = triggered.finished.result(timeout=10)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.CANCELLED)

    token = {"X-CSRF-Token": csrf_token(client)}
    again = client.post(f"/api/plans/{plan_id}/cancel", headers=token)
    assert again.status_code == 409
    assert "only a running plan can be cancelled" in again.json()["detail"]


def test_unknown_plans_are_404(client: TestClient) -> None:
    token = {"X-CSRF-Token": csrf_token(client)}
    assert client.get("/plans/nope").status_code == 404
    assert client.get("/api/plans/nope").json() == {"detail": "execution plan nope not found"}
    for command in ("resume", "cancel", "halt"):
        assert client.post(f"/api/plans/nope/{command}", headers=token).status_code == 404


# -- worlds and delayed plans ----------------------------------------------------------


def test_worlds_page_and_api_list_the_world_and_check_it(
    console_world: World, sqlite_url: str, make_world: Callable[..., World], client: TestClient
) -> None:
    client_world = make_world(sqlite_url, executor=False)
    html = client.get("/worlds").text
    assert console_world.id in html
    assert client_world.id in html
    assert '<td data-label="Kind">executor</td>' in html
    assert '<td data-label="Kind">client</td>' in html

    worlds = {w["id"]: w for w in client.get("/api/worlds").json()}
    assert worlds[console_world.id]["executor"] is True
    assert worlds[console_world.id]["queues"] == ["default"]
    assert worlds[console_world.id]["current"] is True
    assert worlds[client_world.id]["executor"] is False

    checked = post(client, f"/worlds/{console_world.id}/check", "/worlds")
    assert message(checked) == f"ok: world {console_world.id} answered"
    token = {"X-CSRF-Token": csrf_token(client)}
    api = client.post(f"/api/worlds/{console_world.id}/check", headers=token)
    assert api.json()["ok"] is True
    assert client.post("/api/worlds/nobody/check", headers=token).status_code == 404


def test_invalidate_a_world_that_went_away(
    console_world: World, sqlite_url: str, make_world: Callable[..., World], client: TestClient
) -> None:
    other = make_world(sqlite_url, executor=False)
    token = {"X-CSRF-Token": csrf_token(client)}
    answer = client.post(f"/api/worlds/{other.id}/invalidate", headers=token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"world {other.id} invalidated: 0 plan(s) handed over"
    assert other.id not in {w["id"] for w in client.get("/api/worlds").json()}
    itself = client.post(f"/api/worlds/{console_world.id}/invalidate", headers=token)
    assert itself.status_code == 409


def test_invalidate_answers_501_when_the_world_cannot(
    console_world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(World, "invalidate")
    token = csrf_token(client, "/worlds")
    api = client.post("/api/worlds/x/invalidate", headers={"X-CSRF-Token": token})
    assert api.status_code == 501
    assert api.json() == {"detail": "invalidating a world is not available yet"}
    page = client.post("/worlds/x/invalidate", data={"csrf_token": token})
    assert page.status_code == 501
    assert "not available yet" in message(page.text)


def test_delayed_plans_can_be_listed_cancelled_and_run_now(
    console_world: World, client: TestClient
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    first = console_world.delay(Flaky, later, key="delayed-1")
    second = console_world.delay(Flaky, later, key="delayed-2")
    html = client.get("/delayed").text
    assert first.id in html
    assert second.id in html
    assert len(client.get("/api/delayed").json()) == 2

    cancelled = post(client, f"/delayed/{first.id}/cancel", "/delayed")
    assert "cancelled" in message(cancelled)
    run = post(client, f"/delayed/{second.id}/run", "/delayed")
    assert message(run).startswith("ok: execution plan")
    assert client.get("/api/delayed").json() == []
    plans = console_world.persistence
    assert plans.load_execution_plan(first.id).result is PlanResult.CANCELLED
    done = eventually(lambda: plans.load_execution_plan(second.id).state is PlanState.STOPPED)
    assert done
    assert plans.load_execution_plan(second.id).result is PlanResult.SUCCESS


# -- the API document and mounting ----------------------------------------------------


def test_openapi_document_describes_the_api(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/plans",
        "/api/plans/{plan_id}",
        "/api/plans/{plan_id}/resume",
        "/api/plans/{plan_id}/cancel",
        "/api/plans/{plan_id}/halt",
        "/api/plans/{plan_id}/steps/{step_id}/skip",
        "/api/worlds",
        "/api/worlds/{world_id}/check",
        "/api/worlds/{world_id}/invalidate",
    ):
        assert path in paths
    assert not any(p.startswith("/plans") or p == "/" for p in paths)
    params = {p["name"] for p in paths["/api/plans"]["get"]["parameters"]}
    assert params == {
        "state",
        "result",
        "label",
        "action_class",
        "text",
        "started_after",
        "started_before",
        "key",
        "sort",
        "desc",
        "page",
        "per_page",
    }


def test_the_console_works_mounted_under_a_prefix(console_world: World) -> None:
    host = FastAPI()
    host.mount("/ops/dynflow", create_app(console_world, auth=NO_AUTH, wait_seconds=10))
    plan = paused_plan(console_world, uuid.uuid4().hex)
    with TestClient(host, base_url="http://127.0.0.1:8642", follow_redirects=False) as client:
        page = client.get("/ops/dynflow/")
        assert page.status_code == 200
        assert f'href="/ops/dynflow/plans/{plan.id}"' in page.text
        assert 'href="/ops/dynflow/static/console.css"' in page.text
        assert client.get("/ops/dynflow/static/console.css").status_code == 200
        assert "Path=/ops/dynflow/" in page.headers["set-cookie"]
        detail = client.get(f"/ops/dynflow/plans/{plan.id}").text
        assert f'action="/ops/dynflow/plans/{plan.id}/halt"' in detail
        token = csrf_token(client, "/ops/dynflow/")
        halted = client.post(f"/ops/dynflow/plans/{plan.id}/halt", data={"csrf_token": token})
        assert halted.status_code == 200
        assert client.get("/ops/dynflow/api/plans").json()["counts"]["stopped"] == 1


def test_the_api_reads_plans_on_every_database(
    db_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    world = make_world(db_url)
    key = uuid.uuid4().hex
    plan = paused_plan(world, key)
    client = make_client(world)
    listing = client.get("/api/plans", params={"state": "paused", "label": "Flaky"}).json()
    assert [p["id"] for p in listing["items"]] == [plan.id]
    assert listing["counts"]["paused"] == 1
    assert client.get(f"/api/plans/{plan.id}").json()["state"] == "paused"
    FAILING.discard(key)
    token = {"X-CSRF-Token": csrf_token(client)}
    resumed = client.post(f"/api/plans/{plan.id}/resume", headers=token)
    assert resumed.json()["plan"]["result"] == "success"


def test_plan_pages_show_trigger_options_and_what_waits(
    console_world: World, client: TestClient
) -> None:
    key = uuid.uuid4().hex
    first = console_world.options(key=key, priority=4, labels={"team": "web"}, deadline=600).plan(
        Two, key
    )
    second = console_world.options(after=[first.id]).delay(Two, 3600, key)

    html = client.get(f"/plans/{first.id}").text
    assert key in html
    assert "team=web" in html
    assert "Deadline" in html
    assert "Waited for by" in html
    assert f"/plans/{second.id}" in html
    page = client.get(f"/plans/{second.id}").text
    assert "Starts after" in page
    assert f"/plans/{first.id}" in page
    listed = client.get("/", params={"key": key}).text
    assert f"/plans/{first.id}" in listed
    assert f"/plans/{second.id}" not in listed
