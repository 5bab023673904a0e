"""Fixtures of the web console tests: a world on SQLite and test clients over its console."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from dynflow import ExecutionPlan, PlanState, World
from dynflow.web import NO_AUTH, create_app
from tests.web.actions import FAILING, Flaky

MakeClient = Callable[..., TestClient]
#: the console without authentication answers to loopback names only
ORIGIN = "http://localhost"


@pytest.fixture
def console_world(sqlite_url: str, make_world: Callable[..., World]) -> World:
    return make_world(sqlite_url)


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """``make_client(world, auth=NO_AUTH, **create_app_options)``."""
    clients: list[TestClient] = []

    def factory(world: World, auth: Any = NO_AUTH, **options: Any) -> TestClient:
        options.setdefault("wait_seconds", 10)
        client = TestClient(
            create_app(world, auth=auth, **options), base_url=ORIGIN, follow_redirects=False
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def client(console_world: World, make_client: MakeClient) -> TestClient:
    return make_client(console_world)


def csrf_token(client: TestClient, path: str = "/", **kwargs: Any) -> str:
    """The CSRF token of a page (the client keeps the CSRF cookie it is bound to)."""
    page = client.get(path, **kwargs)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found is not None
    return found.group(1)


def paused_plan(world: World, key: str) -> ExecutionPlan:
    """A Flaky plan that failed and paused (its key stays in FAILING until removed)."""
    FAILING.add(key)
    plan = world.trigger(Flaky, key=key).finished.result(timeout=10)
    assert plan.state is PlanState.PAUSED
    return plan
