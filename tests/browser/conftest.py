"""Browser tests: the console served by uvicorn over a real world (SQLite file), driven
through Debian's Chromium by Playwright.

Skipped when Chromium is absent, except in CI (``CI=true``) where its absence fails.
Screenshots land in ``test-artifacts/browser/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright

from dynflow import World
from dynflow.web import TokenAuth, create_app
from tests.support import eventually

TOKEN = "browser-test-token"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]


def chromium_path() -> str:
    """Debian's Chromium, or skip (fail when CI=true)."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if found is None:
        problem = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}: required when CI=true")
        pytest.skip(problem)
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Console:
    world: World
    url: str


@pytest.fixture
def console(sqlite_url: str, make_world: Callable[..., World]) -> Iterator[Console]:
    """The console of a threaded world on a SQLite file, served on 127.0.0.1:<free port>."""
    world = make_world(sqlite_url)
    app = create_app(world, auth=TokenAuth(TOKEN), wait_seconds=10)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", access_log=False)
    server = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="console-server", daemon=True
    )
    thread.start()
    try:
        eventually(lambda: server.started)
        yield Console(world, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies); its last screen is saved as an artefact."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        page.screenshot(path=artifact(f"{request.node.name}-last"))
        context.close()


def artifact(name: str) -> Path:
    """Where the screenshot ``name`` is saved."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def screenshot(page: Page, name: str) -> Path:
    path = artifact(name)
    page.screenshot(path=path, full_page=True)
    return path


def log_in(page: Page, console: Console) -> None:
    """Through the login form, as a person would."""
    page.goto(f"{console.url}/")
    page.wait_for_url(f"{console.url}/login")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{console.url}/")
