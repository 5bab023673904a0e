"""The plan page's graph of big plans: alike parts in a row grouped, big groups expanded
in chunks, group nodes carrying their steps for live recounts, and the output reference
edges kept after the steps ran."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from dynflow import PlanResult, PlanState, World
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.web import graph, graph_groups
from tests.web.plan_actions import Big, Refs
from tests.web.test_plan_page import EDGE, NODE, run_steps

MEMBERS = re.compile(r'data-group="([^"]+)" data-members="([^"]*)" data-head="([^"]*)"')


def expand_ranges(text: str) -> list[int]:
    """The ids of a data-members attribute (what the page's script reads)."""
    ids: list[int] = []
    for part in text.split():
        if ":" in part:
            start, stride, count = (int(p) for p in part.split(":"))
            ids += [start + stride * n for n in range(count)]
        else:
            ids.append(int(part))
    return ids


def test_member_ranges_are_arithmetic_runs_and_single_ids() -> None:
    ids = [3, 5, 7, 9, 20, 21, 22, 40, 100]
    text = graph_groups.member_ranges(ids)
    assert text == "3:2:4 20:1:3 40 100"
    assert expand_ranges(text) == ids
    assert graph_groups.member_ranges([]) == ""
    assert graph_groups.member_ranges([8]) == "8"
    assert expand_ranges(graph_groups.member_ranges(range(2, 20_002, 2))) == list(
        range(2, 20_002, 2)
    )


def test_alike_concurrences_in_a_row_are_one_group_with_their_steps(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.plan(Big, 20)
    html = client.get(f"/plans/{plan.id}").text
    ids = sorted(run_steps(plan).values())
    assert NODE.findall(html) == [("pending", "group", f"r{ids[0]}")]
    (group_id, members, head), *_ = MEMBERS.findall(html)
    assert group_id == f"r{ids[0]}"
    assert expand_ranges(members) == ids
    assert head == "20 alike in a row of 10 steps (Other, Leaf): 200 steps"
    assert 'data-counts="200 pending"' in html
    assert "&#215; 20 Other, Leaf" in html
    assert f'href="/plans/{plan.id}?tab=graph&amp;expand=r{ids[0]}"' in html


def test_a_big_group_expands_in_chunks_that_expand_in_turn(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.plan(Big, 60)  # 600 run steps: over what one expansion draws
    ids = sorted(run_steps(plan).values())
    whole = f"r{ids[0]}"
    html = client.get(f"/plans/{plan.id}", params={"expand": whole}).text
    chunks = [ref for _, kind, ref in NODE.findall(html) if kind == "group"]
    assert chunks == [f"r{ids[0]}-30", f"r{ids[300]}-30"]
    assert [ref for _, kind, ref in NODE.findall(html) if kind == "step"] == []
    # the chunks follow each other in the sequence
    assert {(a, b) for _, a, b in EDGE.findall(html)} == {(chunks[0], chunks[1])}
    # a chunk's link keeps the whole group expanded
    assert f"expand={whole}&amp;expand={chunks[1]}" in html
    opened = client.get(f"/plans/{plan.id}", params={"expand": [whole, chunks[1]]}).text
    nodes = NODE.findall(opened)
    assert [ref for _, kind, ref in nodes if kind == "group"] == [chunks[0]]
    assert sorted(int(ref) for _, kind, ref in nodes if kind == "step") == ids[300:]


def test_a_ten_thousand_step_plan_draws_a_small_graph() -> None:
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.build(Big, (500,), {})
    plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    assert len(plan.steps) > 10_000
    drawn = graph.layout(plan)
    assert [n.kind for n in drawn.nodes] == ["group"]
    group = drawn.nodes[0].group
    assert group is not None
    assert (group.branches, group.kind, group.each, len(group.step_ids)) == (500, "run", 10, 5000)
    assert len(graph.svg(plan, drawn, "/plans/x?tab=graph")) < 5_000
    # expanded: ten chunks of 50 concurrences, one of them open (500 step nodes)
    first = drawn.nodes[0].id
    chunks = [n for n in graph.layout(plan, [first]).nodes if n.kind == "group"]
    assert [n.group.branches for n in chunks if n.group] == [50] * 10
    opened = graph.layout(plan, [first, chunks[3].id])
    assert sum(n.kind == "step" for n in opened.nodes) == 500
    assert len(graph.svg(plan, opened, "/plans/x?tab=graph", [first, chunks[3].id])) < 1_500_000


def test_reference_edges_stay_after_the_steps_ran(console_world: World, client: TestClient) -> None:
    plan = console_world.trigger(Refs).finished.result(timeout=10)
    assert plan.result is PlanResult.SUCCESS
    first, second, _ = sorted(s.id for s in plan.steps.values() if str(s.phase) == "run")
    # the second leaf's input holds the first's output now, no reference
    assert plan.action(plan.steps[second].action_id).input["n"] == 1
    html = client.get(f"/plans/{plan.id}").text
    assert [state for state, _, _ in NODE.findall(html)] == ["success"] * 3
    assert ("ref", f"s{first}", f"s{second}") in EDGE.findall(html)


def test_the_timeline_alone_is_the_tabs_content(console_world: World, client: TestClient) -> None:
    plan = console_world.trigger(Refs).finished.result(timeout=10)
    whole = client.get(f"/plans/{plan.id}", params={"tab": "timeline"}).text
    alone = client.get(f"/plans/{plan.id}/timeline")
    assert alone.status_code == 200
    assert alone.headers["content-type"].startswith("text/html")
    assert "{#" not in alone.text
    assert "<html" not in alone.text
    start = whole.index('<div class="timeline-tab"')
    assert alone.text.strip() == whole[start : start + len(alone.text.strip())]
    assert f'data-timeline="/plans/{plan.id}/timeline?page=1"' in alone.text
    assert alone.text.count('<g class="row"') == len(plan.steps)
    assert client.get("/plans/nope/timeline").status_code == 404
    assert client.get(f"/plans/{plan.id}/timeline", params={"page": 0}).status_code == 400
