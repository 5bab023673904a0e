"""The console in a real browser: log in, resume a paused plan, see a wide run flow."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from playwright.sync_api import Dialog, Page, expect

from dynflow import PlanResult, PlanState, World
from tests.browser.actions import WIDE, Wide
from tests.browser.conftest import TOKEN, Console, artifact, log_in, screenshot
from tests.support import Gate, eventually
from tests.web.actions import FAILING, GATES, Blocking, Flaky

#: the console's colours (console.css) as the browser computes them
GREEN = "rgb(191, 232, 191)"
YELLOW = "rgb(247, 226, 168)"


def test_login_form_refuses_a_wrong_token_and_lets_the_right_one_in(
    page: Page, console: Console
) -> None:
    page.goto(f"{console.url}/")
    expect(page).to_have_url(f"{console.url}/login")
    page.get_by_label("Token").fill(TOKEN + "-wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".message.failed")).to_have_text("wrong token")
    page.goto(f"{console.url}/worlds")
    expect(page).to_have_url(f"{console.url}/login")

    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{console.url}/")
    expect(page.get_by_role("heading", name="Execution plans")).to_be_visible()
    screenshot(page, "logged-in")


def test_resume_a_paused_plan_and_see_it_turn_green(page: Page, console: Console) -> None:
    key = uuid.uuid4().hex
    FAILING.add(key)
    plan = console.world.trigger(Flaky, key=key).finished.result(timeout=10)
    assert plan.state is PlanState.PAUSED

    log_in(page, console)
    page.get_by_role("link", name=plan.label).first.click()
    expect(page).to_have_url(f"{console.url}/plans/{plan.id}")
    state = page.locator('[data-live="state"]')
    result = page.locator('[data-live="result"]')
    expect(state).to_have_text("paused")
    expect(state).to_have_css("background-color", YELLOW)
    expect(page.locator(".error-summary .error")).to_contain_text(f"{key} is still failing")
    screenshot(page, "paused-plan")

    # Dismissing the confirmation sends nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    commands = page.locator(".plan-header .commands")
    commands.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("paused")
    assert console.world.persistence.load_execution_plan(plan.id).state is PlanState.PAUSED

    FAILING.discard(key)
    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    commands.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text(
        re.compile(rf"execution plan {plan.id} resumed: now stopped/success")
    )
    assert questions == ["Resume this plan?"]
    expect(state).to_have_text("stopped")
    expect(result).to_have_text("success")
    expect(result).to_have_css("background-color", GREEN)
    expect(page.locator("svg.graph .node")).to_have_count(1)
    expect(page.locator("svg.graph .node.state-success")).to_have_count(1)
    expect(page.locator(".error-summary")).to_have_count(0)
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    screenshot(page, "resumed-plan")

    stored = console.world.persistence.load_execution_plan(plan.id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


def test_a_plan_of_fifty_steps_is_drawn_as_ten_nodes_and_a_group_that_expands(
    page: Page, console: Console
) -> None:
    plan = console.world.trigger(Wide).finished.result(timeout=30)
    assert plan.result is PlanResult.SUCCESS
    run_steps = sorted(s.id for s in plan.steps.values() if str(s.phase) == "run")
    assert len(run_steps) == WIDE

    log_in(page, console)
    page.goto(f"{console.url}/plans/{plan.id}")
    graph = page.locator("svg.graph")
    expect(graph.locator(".node:not(.group)")).to_have_count(10)
    group = graph.locator(".node.group")
    expect(group).to_have_count(1)
    expect(group).to_contain_text(f"\u00d7 {WIDE - 10} Step")
    expect(graph.locator(".edge")).to_have_count(10)  # nine in the sequence, one to the group
    screenshot(page, "graph-grouped")
    group.click()
    expect(graph.locator(".node")).to_have_count(WIDE)
    expect(graph.locator(".node.state-success")).to_have_count(WIDE)
    sizes = graph.locator(".node rect").evaluate_all(
        "rects => rects.map(r => [r.getBBox().width, r.getBBox().height])"
    )
    assert len(sizes) == WIDE
    assert all(width > 0 and height > 0 for width, height in sizes)
    # a node opens its step in the side panel
    last = run_steps[-1]
    graph.locator(f'.node[data-step="{last}"]').click()
    expect(page).to_have_url(re.compile(rf"step={last}#panel$"))
    panel = page.locator("aside.panel")
    expect(panel).to_contain_text(f"Step {last}")
    expect(panel).to_be_in_viewport()
    screenshot(page, "graph-expanded-with-panel")
    page.locator(".graph-view").screenshot(path=artifact("fifty-steps"))


def test_the_worlds_page_shows_the_busy_workers_of_each_pool(
    page: Page, console: Console, make_world: Callable[..., World]
) -> None:
    gate = GATES["browser-pool"] = Gate()
    url = str(console.world.persistence.url)
    executor = make_world(url, pool_size=2, queues={"slow": 1}, heartbeat_interval=0.1, lease=5)
    triggered = executor.trigger(Blocking, key="browser-pool")
    try:
        assert gate.entered.wait(10)
        log_in(page, console)
        row = page.locator(f"#world-{executor.id}")

        def busy_shown() -> bool:
            page.goto(f"{console.url}/worlds")
            return "default (1/2), slow (0/1)" in row.inner_text()

        eventually(busy_shown)
        expect(page.get_by_role("columnheader", name="Queues (busy/workers)")).to_be_visible()
        screenshot(page, "worlds-pool-use")

        # on a phone: one card per world, each value labelled, nothing to scroll sideways
        page.set_viewport_size({"width": 375, "height": 800})
        page.reload()
        box = page.locator(".table-box")
        assert box.evaluate("b => b.scrollWidth <= b.clientWidth + 1")
        queues = row.locator("td.queues")
        label = queues.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"Queues"'
        expect(queues).to_contain_text("default (1/2), slow (0/1)")
        screenshot(page, "worlds-narrow")
    finally:
        gate.open()
    assert triggered.finished.result(10).result is PlanResult.SUCCESS
