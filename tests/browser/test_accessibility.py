"""Every page of the console through axe-core (no serious or critical violation), in
light and dark colour schemes and at a phone's width, and by keyboard."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from dynflow import PlanState
from tests.browser.axe import violations
from tests.browser.conftest import Console, log_in, screenshot
from tests.support import suspended_step
from tests.web.actions import FAILING, Flaky, Waiting
from tests.web.plan_actions import Big, Fan


@dataclass
class Plans:
    paused: str
    planned: str
    suspended: str
    grouped: str


@pytest.fixture
def plans(console: Console) -> Iterator[Plans]:
    world = console.world
    key = uuid.uuid4().hex
    FAILING.add(key)
    paused = world.trigger(Flaky, key=key).finished.result(10)
    assert paused.state is PlanState.PAUSED
    for i in range(3):
        world.trigger(Flaky, key=f"fine-{i}").finished.result(10)
    planned = world.plan(Flaky, key="needs a review")
    waiting = world.trigger(Waiting)
    suspended_step(world, waiting.execution_plan_id)
    world.delay(Flaky, 3600, key="tomorrow")
    grouped = world.plan(Big, 13)  # its graph: one group node
    yield Plans(paused.id, planned.id, waiting.execution_plan_id, grouped.id)
    FAILING.discard(key)
    world.halt(waiting.execution_plan_id).result(10)


def _context(browser: Browser, scheme: str, width: int) -> BrowserContext:
    context = browser.new_context(
        viewport={"width": width, "height": 800},
        color_scheme=scheme,  # type: ignore[arg-type]
        bypass_csp=True,  # lets axe-core in; the console's own pages need no exception
    )
    context.set_default_timeout(15_000)
    return context


def _pages(console: Console, plans: Plans) -> dict[str, str]:
    return {
        "plans": "/",
        "overview": "/overview",
        "plan-paused": f"/plans/{plans.paused}",
        "plan-review": f"/plans/{plans.planned}",
        "plan-suspended": f"/plans/{plans.suspended}",
        "plan-grouped": f"/plans/{plans.grouped}",
        "worlds": "/worlds",
        "delayed": "/delayed",
        "trigger": "/trigger",
    }


def _fits(page: Page) -> bool:
    """No horizontal scroll of the page itself (tables scroll in their own box)."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


@pytest.mark.parametrize(
    ("scheme", "width"), [("light", 1280), ("dark", 1280), ("light", 375), ("dark", 375)]
)
def test_every_page_passes_axe(
    browser: Browser, console: Console, plans: Plans, scheme: str, width: int
) -> None:
    context = _context(browser, scheme, width)
    page = context.new_page()
    try:
        page.goto(f"{console.url}/login")
        assert violations(page) == [], "login"
        screenshot(page, f"a11y-login-{scheme}-{width}")
        log_in(page, console)
        problems: dict[str, object] = {}
        too_wide: list[str] = []
        for name, path in _pages(console, plans).items():
            page.goto(f"{console.url}{path}")
            expect(page.locator("h1")).to_be_visible()
            found = violations(page)
            if found:
                problems[name] = found
            if not _fits(page):
                too_wide.append(name)
            screenshot(page, f"a11y-{name}-{scheme}-{width}")
        assert problems == {}
        assert too_wide == []
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        if scheme == "dark":
            assert background == "rgb(15, 20, 26)"
        else:
            assert background == "rgb(255, 255, 255)"
    finally:
        context.close()


def test_keyboard_skip_link_and_visible_focus(browser: Browser, console: Console) -> None:
    context = _context(browser, "light", 1280)
    page = context.new_page()
    try:
        log_in(page, console)
        page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        expect(skip).to_be_focused()
        box = skip.bounding_box()
        assert box is not None
        assert box["y"] >= 0
        outline = skip.evaluate("e => getComputedStyle(e).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.tagName")
        assert focused in ("A", "BUTTON", "INPUT", "SUMMARY", "SELECT")
        screenshot(page, "a11y-keyboard")
    finally:
        context.close()


def test_bulk_resume_and_review_in_the_browser(browser: Browser, console: Console) -> None:
    key = uuid.uuid4().hex
    FAILING.add(key)
    paused = console.world.trigger(Flaky, key=key).finished.result(10)
    FAILING.discard(key)
    planned = console.world.plan(Flaky, key="review in browser")
    context = _context(browser, "light", 1280)
    page = context.new_page()
    try:
        log_in(page, console)
        page.get_by_role("link", name="To review (1)").click()
        expect(
            page.get_by_role("checkbox", name=f"Select {planned.label}", exact=False)
        ).to_be_visible()
        page.goto(f"{console.url}/?state=paused")
        page.get_by_label(f"Select {paused.label} ({paused.id[:8]})").check()
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Resume selected").click()
        expect(page.get_by_role("status")).to_have_text("resumed 1")
        screenshot(page, "bulk-resumed")

        page.goto(f"{console.url}/plans/{planned.id}")
        expect(page.get_by_role("heading", name="Review")).to_be_visible()
        screenshot(page, "review")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Approve and execute").click()
        expect(page.get_by_role("status")).to_contain_text("approved by token")
        page.get_by_role("link", name="History").click()
        expect(page.get_by_role("cell", name="approved by token")).to_be_visible()
        screenshot(page, "review-approved")

        # many actions: their inputs scroll in a box, the decision stays on the screen
        big = console.world.plan(Fan, 60)
        page.goto(f"{console.url}/plans/{big.id}")
        inputs = page.locator("ol.review-inputs")
        assert inputs.locator("li").count() >= 60
        assert inputs.evaluate("box => box.scrollHeight > box.clientHeight")
        expect(page.get_by_role("button", name="Approve and execute")).to_be_in_viewport()
        inputs.focus()  # scrolls with the keyboard
        assert inputs.evaluate("box => document.activeElement === box")
        page.keyboard.press("End")
        # keyboard scrolling may be animated: wait for it to reach the end, not read it at once
        page.wait_for_function(
            "box => box.scrollTop > 0 && box.scrollTop + box.clientHeight >= box.scrollHeight - 1",
            arg=inputs.element_handle(),
            timeout=5000,
        )
        screenshot(page, "review-many-actions")
    finally:
        context.close()
