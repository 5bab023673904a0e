"""The plan page: header, error summary, tabs, the graph, the timeline, big plans, the
full value of a cut input, the live event stream and the sub-plans tab."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from dynflow import PlanResult, PlanState, StepState, World
from dynflow.clock import ManualClock
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.web import graph, plan_view
from tests.support import eventually, suspended_step
from tests.web.actions import FAILING, Retried, Waiting
from tests.web.conftest import MakeClient, csrf_token
from tests.web.plan_actions import FAILING_N, Big, Fan, Leaf, Parent, Refs

NODE = re.compile(r'<g class="node (?:group )?state-([a-z]+)" data-(step|group)="([^"]+)"')
EDGE = re.compile(r'<path class="edge (flow|ref)" data-from="([^"]+)" data-to="([^"]+)"')


def run_steps(plan: ExecutionPlan) -> dict[object, int]:
    """Run step ids by their action's input ``n``."""
    return {
        plan.action(s.action_id).input.get("n"): s.id
        for s in plan.steps.values()
        if str(s.phase) == "run" and "n" in plan.action(s.action_id).input
    }


def events(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of a text/event-stream."""
    found = []
    name = "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            found.append((name, json.loads(line[len("data: ") :])))
            name = "message"
    return found


# -- header, tabs, graph --------------------------------------------------------------------


def test_the_graph_has_a_node_per_step_and_flow_and_reference_edges(
    console_world: World, client: TestClient
) -> None:
    # planned, not run: a step that ran keeps its input with the references resolved,
    # so reference edges are known until the referencing step runs
    plan = console_world.plan(Refs)
    # in planning order: the two branches (the second reads the first's output), the last
    first, second, third = sorted(s.id for s in plan.steps.values() if str(s.phase) == "run")
    html = client.get(f"/plans/{plan.id}").text
    nodes = {(kind, ref): state for state, kind, ref in NODE.findall(html)}
    assert nodes == {("step", str(i)): "pending" for i in (first, second, third)}
    edges = {(kind, a, b) for kind, a, b in EDGE.findall(html)}
    # the concurrence's two branches both lead to the step after it; the second branch
    # reads the first's output: a dashed reference edge
    assert edges == {
        ("flow", f"s{first}", f"s{third}"),
        ("flow", f"s{second}", f"s{third}"),
        ("ref", f"s{first}", f"s{second}"),
    }
    for state in graph.LEGEND:
        assert f'<span class="swatch state-{state}">{state}</span>' in html
    # the header: state, result, progress, times, entry action; tabs as links
    assert '<span class="badge state-planned" data-live="state">planned</span>' in html
    assert '<span class="badge result-pending" data-live="result">pending</span>' in html
    assert '<progress max="1" value="0.0"' in html
    assert "<dt>Wall time</dt>" in html
    assert "<dt>Execution time</dt>" in html
    assert "tests.web.plan_actions.Refs" in html
    for name, title in plan_view.TABS:
        assert f'href="/plans/{plan.id}?tab={name}"' in html, title
    assert 'class="current" aria-current="page">Graph</a>' in html
    assert client.get(f"/plans/{plan.id}", params={"tab": "bogus"}).status_code == 400
    assert console_world.execute(plan.id).result(timeout=10).result is PlanResult.SUCCESS
    html = client.get(f"/plans/{plan.id}").text
    assert [state for state, _, _ in NODE.findall(html)] == ["success"] * 3
    assert "data-events=" not in html  # a stopped plan has no live stream


def test_a_concurrence_of_200_branches_is_one_group_node_that_expands(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.plan(Fan, 200)
    ids = run_steps(plan)
    html = client.get(f"/plans/{plan.id}").text
    nodes = NODE.findall(html)
    groups = [ref for _, kind, ref in nodes if kind == "group"]
    assert groups == [f"g{ids[0]}"]
    assert [ref for _, kind, ref in nodes if kind == "step"] == [str(ids["start"]), str(ids["end"])]
    assert "&#215; 200 Leaf" in html
    assert {(a, b) for _, a, b in EDGE.findall(html)} == {
        (f"s{ids['start']}", f"g{ids[0]}"),
        (f"g{ids[0]}", f"s{ids['end']}"),
    }
    # its link expands it: 202 step nodes, an edge into and out of each branch
    assert f'href="/plans/{plan.id}?tab=graph&amp;expand=g{ids[0]}"' in html
    expanded = client.get(f"/plans/{plan.id}", params={"expand": f"g{ids[0]}"}).text
    steps = [ref for _, kind, ref in NODE.findall(expanded) if kind == "step"]
    assert len(steps) == 202
    assert len(EDGE.findall(expanded)) == 400
    assert f"collapse g{ids[0]}" in expanded


def test_a_node_opens_the_steps_details_in_the_side_panel(
    console_world: World, client: TestClient
) -> None:
    FAILING_N.add("boom")
    try:
        plan = console_world.trigger(Leaf, n="boom").finished.result(timeout=10)
    finally:
        FAILING_N.discard("boom")
    step_id = run_steps(plan)["boom"]
    html = client.get(f"/plans/{plan.id}").text
    link = f'href="/plans/{plan.id}?tab=graph&amp;step={step_id}#panel"'
    assert link in html
    assert 'id="panel"' not in html
    panel = client.get(f"/plans/{plan.id}", params={"tab": "graph", "step": step_id}).text
    aside = panel[panel.index('<aside class="panel" id="panel"') :]
    assert f"Step {step_id} <small>run</small>" in aside
    assert "leaf boom failed" in aside
    assert "<summary>Backtrace</summary>" in aside
    assert "&#34;n&#34;: &#34;boom&#34;" in aside  # the input
    assert "Skip this step" in aside
    assert "<dt>Started</dt>" in aside
    assert "<dt>Time</dt>" in aside


def test_the_error_summary_lists_failed_steps_with_attempts_and_their_buttons(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    clock = ManualClock(utc_start=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    world = make_world(sqlite_url, clock=clock)
    client = make_client(world)
    key = uuid.uuid4().hex
    FAILING.add(key)
    triggered = world.trigger(Retried, key=key)
    plan_id = triggered.execution_plan_id

    def run_step() -> tuple[int, str, int]:
        plan = world.persistence.load_execution_plan(plan_id)
        step = next(s for s in plan.steps.values() if str(s.phase) == "run")
        return step.id, str(step.state), step.attempts

    for attempt in (1, 2):
        eventually(lambda attempt=attempt: run_step()[1:] == ("waiting", attempt))  # type: ignore[misc]
        html = client.get(f"/plans/{plan_id}").text
        summary = html[html.index('<section class="error-summary"') :]
        assert f"attempt {attempt} of 3" in summary
        assert "backoff: next attempt at" in summary
        if attempt == 1:
            timeline = client.get(f"/plans/{plan_id}", params={"tab": "timeline"}).text
            assert '<rect class="wait backoff"' in timeline
        clock.advance(60 * 2 ** (attempt - 1))  # the backoff doubles
    plan = triggered.finished.result(timeout=10)
    assert plan.state is PlanState.PAUSED
    step_id = run_step()[0]
    html = client.get(f"/plans/{plan_id}").text
    summary = html[html.index('<section class="error-summary"') : html.index('<nav class="tabs"')]
    assert "1 failed step</h2>" in summary
    assert f"<code>{Retried.__module__}.Retried</code>" in summary
    assert f"{key} refused" in summary
    assert "attempt 3 of 3" in summary
    token = csrf_token(client, f"/plans/{plan_id}")
    for action in (f"/plans/{plan_id}/resume", f"/plans/{plan_id}/steps/{step_id}/skip"):
        form = summary[summary.index(f'action="{action}"') :]
        assert f'name="csrf_token" value="{token}"' in form[: form.index("</form>")]
    FAILING.discard(key)
    skipped = client.post(f"/plans/{plan_id}/steps/{step_id}/skip", data={"csrf_token": token})
    assert skipped.status_code == 200
    assert world.persistence.load_execution_plan(plan_id).steps[step_id].state is StepState.SKIPPED


def test_the_timeline_has_a_bar_per_started_step_and_shades_pauses(
    console_world: World, client: TestClient
) -> None:
    FAILING_N.add("late")
    plan = console_world.trigger(Leaf, n="late").finished.result(timeout=10)
    FAILING_N.discard("late")
    assert plan.state is PlanState.PAUSED
    client.post(
        f"/plans/{plan.id}/resume", data={"csrf_token": csrf_token(client, f"/plans/{plan.id}")}
    )
    plan = console_world.persistence.load_execution_plan(plan.id)
    assert plan.result is PlanResult.SUCCESS
    html = client.get(f"/plans/{plan.id}", params={"tab": "timeline"}).text
    rows = re.findall(r'<g class="row" data-step="(\d+)">', html)
    assert sorted(int(r) for r in rows) == sorted(plan.steps)
    bars = re.findall(
        r'<rect class="bar state-([a-z]+)" x="([\d.]+)" y="\d+" width="([\d.]+)"', html
    )
    assert [state for state, _, _ in bars] == ["success"] * len(plan.steps)
    assert all(float(width) >= 2 for _, _, width in bars)
    assert html.count('<rect class="wait paused"') == 1  # paused, then resumed


# -- big plans and big values ------------------------------------------------------------------


def test_a_plan_of_a_thousand_steps_makes_pages_under_one_and_a_half_megabytes(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.plan(Big, 50, payload="p" * 2000)
    assert len(plan.steps) >= 1000
    sizes = {}
    for tab in ("graph", "timeline", "steps", "actions", "history", "sub-plans"):
        response = client.get(f"/plans/{plan.id}", params={"tab": tab})
        assert response.status_code == 200
        sizes[tab] = len(response.content)
    assert max(sizes.values()) < 1_500_000, sizes
    graph_html = client.get(f"/plans/{plan.id}").text
    # 50 alike concurrences in a row: one group node, that expands to every run step
    first = min(run_steps(plan).values())
    assert NODE.findall(graph_html) == [("pending", "group", f"r{first}")]
    expanded = client.get(f"/plans/{plan.id}", params={"expand": f"r{first}"}).text
    assert len(NODE.findall(expanded)) == 500
    steps = client.get(f"/plans/{plan.id}", params={"tab": "steps", "page": 3}).text
    assert steps.count('<tr class="step-row"') == plan_view.STEPS_PER_PAGE
    assert "page 3 of 11" in steps


def test_a_big_input_is_cut_with_a_link_to_the_whole_value(
    console_world: World, client: TestClient
) -> None:
    big = "x" * 200_000
    plan = console_world.plan(Leaf, n=big)
    action = plan.entry_action
    step_id = action.run_step_id
    html = client.get(f"/plans/{plan.id}", params={"tab": "actions", "step": step_id}).text
    assert len(html) < 40_000
    url = f"/plans/{plan.id}/actions/{action.id}/input"
    assert html.count(f'<a class="show-all" href="{url}">show all (') == 2  # tab and panel
    whole = client.get(url)
    assert whole.headers["content-type"] == "application/json"
    assert whole.json() == {"n": big}
    assert client.get(f"/plans/{plan.id}/actions/{action.id}/output").json() == {}
    assert client.get(f"/plans/{plan.id}/actions/999/input").status_code == 404
    assert client.get(f"/plans/{plan.id}/actions/{action.id}/secret").status_code in (400, 422)


# -- live updates ---------------------------------------------------------------------------


def test_the_event_stream_sends_the_state_then_changes_and_ends_when_the_plan_stops(
    console_world: World, client: TestClient
) -> None:
    triggered = console_world.trigger(Waiting)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(console_world, plan_id)
    page = client.get(f"/plans/{plan_id}").text
    assert f'data-events="/plans/{plan_id}/events"' in page
    lines: list[str] = []
    with client.stream("GET", f"/plans/{plan_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = response.iter_lines()
        for line in stream:  # the full state first
            lines.append(line)
            if line.startswith("data: "):
                break
        first = events(lines)[0]
        assert first[0] == "state"
        assert first[1]["full"] is True
        assert first[1]["state"] == "running"
        assert first[1]["steps"] == {
            str(s.id): str(s.state)
            for s in console_world.persistence.load_execution_plan(plan_id).steps.values()
        }
        assert console_world.event(plan_id, step_id, "go").result(timeout=10)
        lines += list(stream)  # the stream ends by itself when the plan stops
    found = events(lines)
    assert [name for name, _ in found][-1] == "end"
    assert found[-1][1] == {"state": "stopped", "result": "success"}
    changes = [data for name, data in found[1:] if name == "state"]
    assert changes
    assert all("full" not in data for data in changes)
    assert any(data.get("steps", {}).get(str(step_id)) == "success" for data in changes)
    assert changes[-1]["state"] == "stopped"
    assert changes[-1]["progress"] == 1.0
    ids = [line for line in lines if line.startswith("id: ")]
    assert ids == [f"id: {n}" for n in range(1, len(ids) + 1)]
    assert triggered.finished.result(timeout=10).result is PlanResult.SUCCESS


def test_the_event_stream_needs_authentication(
    console_world: World, make_client: MakeClient
) -> None:
    from dynflow.web import TokenAuth

    plan = console_world.trigger(Leaf, n=1).finished.result(timeout=10)
    client = make_client(console_world, auth=TokenAuth("t0ken-for-tests"), allowed_hosts=["*"])
    assert client.get(f"/plans/{plan.id}/events").status_code in (303, 401)
    assert client.get(f"/plans/{plan.id}/actions/1/input").status_code in (303, 401)
    bearer = {"Authorization": "Bearer t0ken-for-tests"}
    ended = client.get(f"/plans/{plan.id}/events", headers=bearer)
    assert [name for name, _ in events(ended.text.splitlines())] == ["state", "end"]
    assert client.get("/plans/nope/events", headers=bearer).status_code == 404


# -- sub-plans ------------------------------------------------------------------------------


def test_the_sub_plans_tab_counts_filters_and_pages_the_children(
    console_world: World, client: TestClient
) -> None:
    prefix = uuid.uuid4().hex[:8]
    FAILING_N.update({f"{prefix}-3", f"{prefix}-7"})
    try:
        plan = console_world.trigger(Parent, count=30, prefix=prefix).finished.result(timeout=60)
    finally:
        FAILING_N.difference_update({f"{prefix}-3", f"{prefix}-7"})
    assert plan.state is PlanState.PAUSED
    html = client.get(f"/plans/{plan.id}", params={"tab": "sub-plans"}).text
    assert '<rect class="bar state-paused" x="0.0" y="0" width="40.0"' in html
    assert '<rect class="bar state-stopped" x="40.0" y="0" width="560.0"' in html
    assert "<title>28 stopped</title>" in html
    assert "<title>2 paused</title>" in html
    assert "all 30</a>" in html
    assert html.count('<tr><td><a href="/plans/') == plan_view.SUB_PLANS_PER_PAGE
    assert "page 1 of 2 (30 sub-plans)" in html
    second = client.get(f"/plans/{plan.id}", params={"tab": "sub-plans", "page": 2}).text
    assert second.count('<tr><td><a href="/plans/') == 5
    paused = client.get(f"/plans/{plan.id}", params={"tab": "sub-plans", "state": "paused"}).text
    assert paused.count('<tr><td><a href="/plans/') == 2
    assert f"leaf {prefix}-3 failed" in paused
    assert f"leaf {prefix}-7 failed" in paused
    assert "badge state-paused result-error" in paused
    assert (
        client.get(f"/plans/{plan.id}", params={"tab": "sub-plans", "state": "x"}).status_code
        == 400
    )
