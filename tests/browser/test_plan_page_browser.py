"""The plan page in a real browser: live updates without a reload, the error summary,
the graph of references, the timeline."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from dynflow import PlanResult, PlanState
from tests.browser.conftest import Console, log_in, screenshot
from tests.support import suspended_step
from tests.web.actions import FAILING, Flaky, Waiting
from tests.web.plan_actions import FAILING_N, Fan, Refs, WaitThenFan


def test_a_running_plan_updates_in_place_without_reloading(page: Page, console: Console) -> None:
    triggered = console.world.trigger(Waiting)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(console.world, plan_id)

    log_in(page, console)
    page.goto(f"{console.url}/plans/{plan_id}")
    state = page.locator('[data-live="state"]')
    node = page.locator(f'svg.graph .node[data-step="{step_id}"]')
    expect(state).to_have_text("running")
    expect(node).to_have_class("node state-suspended")
    expect(page.locator('[data-live="status"]')).to_have_text("live")
    waiting = page.locator('[data-live="suspended"]')
    expect(waiting.locator("h2")).to_have_text("1 step waiting for an event")
    expect(waiting.get_by_role("button", name="Send event")).to_be_visible()  # one step: open
    expect(page.get_by_role("button", name="Halt")).to_be_visible()
    # marks this document: a reload would lose the mark
    page.evaluate("window.stillTheSamePage = true")
    screenshot(page, "live-before")

    assert console.world.event(plan_id, step_id, "go").result(timeout=10)
    assert triggered.finished.result(timeout=10).result is PlanResult.SUCCESS
    expect(state).to_have_text("stopped")
    expect(page.locator('[data-live="result"]')).to_have_text("success")
    expect(node).to_have_class("node state-success")
    expect(node.locator("[data-state-text]")).to_have_text("success")
    expect(page.locator('[data-live="progress-text"]')).to_have_text("100%")
    expect(page.locator("body")).to_have_attribute("data-live-ended", "true")
    expect(waiting).to_be_hidden()  # nothing waits for an event any more
    expect(page.get_by_role("button", name="Halt")).to_be_hidden()  # a running plan's
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "live-after")


def test_the_error_summary_timeline_and_graph_look_right(page: Page, console: Console) -> None:
    key = uuid.uuid4().hex
    FAILING.add(key)
    failed = console.world.trigger(Flaky, key=key).finished.result(timeout=10)
    assert failed.state is PlanState.PAUSED
    refs = console.world.plan(Refs)
    FAILING_N.add("7")
    try:
        fan = console.world.trigger(Fan, 40).finished.result(timeout=30)
    finally:
        FAILING_N.discard("7")
    assert fan.state is PlanState.PAUSED

    log_in(page, console)
    page.goto(f"{console.url}/plans/{failed.id}")
    summary = page.locator(".error-summary")
    expect(summary).to_contain_text("1 failed step")
    expect(summary).to_contain_text(f"{key} is still failing")
    expect(summary.get_by_role("button", name="Skip this step")).to_be_visible()
    expect(summary.get_by_role("button", name="Resume")).to_be_visible()
    screenshot(page, "error-summary")

    page.goto(f"{console.url}/plans/{refs.id}")
    expect(page.locator("svg.graph .edge.ref")).to_have_count(1)
    expect(page.locator("svg.graph .edge.flow")).to_have_count(2)
    page.locator(".graph-view").screenshot(path=screenshot(page, "graph-references"))

    page.goto(f"{console.url}/plans/{fan.id}")
    expect(page.locator("svg.graph .node.group.state-error")).to_have_count(1)
    screenshot(page, "graph-group-with-error")
    page.get_by_role("link", name="Timeline").click()
    rows = page.locator("svg.timeline .row")
    expect(rows).to_have_count(len(fan.steps) - 1)  # the last step never started
    expect(page.locator("svg.timeline .bar.state-error")).to_have_count(1)
    expect(page.locator("svg.timeline .wait.paused")).to_have_count(1)
    screenshot(page, "timeline")
    page.get_by_role("link", name="Steps").click()
    expect(page.locator("tr.step-row")).to_have_count(len(fan.steps))
    screenshot(page, "steps-tab")


def _waiting_steps(console: Console, plan_id: str) -> list[int]:
    plan = console.world.persistence.load_execution_plan(plan_id)
    return sorted(
        s.id
        for s in plan.steps.values()
        if str(s.phase) == "run" and s.action_class.endswith("Waiting")
    )


def test_live_updates_redraw_the_timeline_and_recount_the_groups(
    page: Page, console: Console
) -> None:
    triggered = console.world.trigger(WaitThenFan, 14)
    plan_id = triggered.execution_plan_id
    head = suspended_step(console.world, plan_id)
    head_id, *fan = _waiting_steps(console, plan_id)
    assert head == head_id

    log_in(page, console)
    # the timeline: the fan's steps have not started, then rows appear for them
    page.goto(f"{console.url}/plans/{plan_id}?tab=timeline")
    rows = page.locator("svg.timeline .row")
    started = rows.count()
    head_bar = page.locator(f'svg.timeline .row[data-step="{head}"] .bar')
    expect(head_bar).to_have_class("bar state-suspended")
    expect(page.locator('[data-live="status"]')).to_have_text("live")
    page.evaluate("window.stillTheSamePage = true")
    assert console.world.event(plan_id, head, "go").result(timeout=10)
    expect(rows).to_have_count(started + 14)
    expect(head_bar).to_have_class("bar state-success")
    expect(page.locator(f'svg.timeline .row[data-step="{fan[0]}"] .bar')).to_have_class(
        "bar state-suspended"
    )
    assert page.evaluate("window.stillTheSamePage") is True
    screenshot(page, "live-timeline")

    # the graph: the fan is one group node, whose counts follow its steps
    page.goto(f"{console.url}/plans/{plan_id}")
    group = page.locator(f'svg.graph .node.group[data-group="g{fan[0]}"]')
    expect(group).to_have_attribute("data-counts", "14 suspended")
    expect(page.locator('[data-live="status"]')).to_have_text("live")
    # many steps wait: one line each, their forms folded away until asked for
    waiting = page.locator('[data-live="suspended"]')
    expect(waiting.locator("h2")).to_have_text("14 steps waiting for an event")
    expect(waiting.locator(".suspended-step")).to_have_count(14)
    expect(waiting.get_by_role("button", name="Send event")).to_have_count(0)
    waiting.locator(f'.suspended-step[data-step="{fan[0]}"] summary').click()
    expect(waiting.get_by_role("button", name="Send event")).to_be_visible()
    waiting.screenshot(path=screenshot(page, "suspended-steps"))
    page.evaluate("window.stillTheSamePage = true")
    for step_id in fan[:3]:
        assert console.world.event(plan_id, step_id, "go").result(timeout=10)
    expect(group).to_have_attribute("data-counts", "3 success, 11 suspended")
    expect(waiting.locator("h2")).to_have_text("11 steps waiting for an event")
    expect(waiting.locator(".suspended-step")).to_have_count(11)
    expect(group.locator("title")).to_have_text(
        "14 alike branches (Waiting): 14 steps (3 success, 11 suspended)"
    )
    expect(group).to_have_class("node group state-suspended")
    expect(group.locator(".bar.state-success")).to_have_count(1)
    widths = group.locator(".bar").evaluate_all(
        "bars => bars.map(b => Number(b.getAttribute('width')))"
    )
    assert [round(w) for w in widths] == [round(154 * 11 / 14), round(154 * 3 / 14)]
    assert page.evaluate("window.stillTheSamePage") is True
    page.locator(".graph-view").screenshot(path=screenshot(page, "live-group-counts"))

    for step_id in fan[3:]:
        assert console.world.event(plan_id, step_id, "go").result(timeout=10)
    assert triggered.finished.result(timeout=10).result is PlanResult.SUCCESS
    expect(group).to_have_attribute("data-counts", "14 success")
    expect(group).to_have_class("node group state-success")
    expect(waiting).to_be_hidden()
