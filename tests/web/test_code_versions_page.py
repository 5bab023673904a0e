"""The console on code versions: the plan page says a plan waits for an executor of its
version; the worlds page shows each world's version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynflow import Action, World
from tests.web.conftest import MakeClient

NOTE = "waiting for an executor of version <code>v2</code>"


class Later(Action):
    def run(self, event: Any = None) -> None:
        self.output["ok"] = True


def test_the_plan_page_says_a_plan_waits_for_an_executor_of_its_version(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    console = make_world(sqlite_url, executor=False, code_version="v2")
    make_world(sqlite_url, code_version="v1", auto_execute=False)
    client = make_client(console)
    plan = console.plan(Later)
    page = client.get(f"/plans/{plan.id}")
    assert page.status_code == 200, page.text
    assert NOTE in page.text

    worlds = client.get("/worlds")
    assert worlds.status_code == 200
    assert '<td data-label="Version">v1</td>' in worlds.text
    assert '<td data-label="Version">v2</td>' in worlds.text

    unversioned = make_world(sqlite_url, executor=False, code_version=None).plan(Later)
    assert NOTE not in client.get(f"/plans/{unversioned.id}").text
    new = make_world(sqlite_url, code_version="v2", auto_execute=False)
    assert NOTE not in client.get(f"/plans/{plan.id}").text
    new.execute(plan.id).result(20)
    assert NOTE not in client.get(f"/plans/{plan.id}").text
