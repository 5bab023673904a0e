"""``GET /metrics`` on the console: the world's metrics, behind the console's auth or
``metrics_auth``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from dynflow import Action, PlanResult, PlanState, World
from dynflow.web import NO_AUTH, TokenAuth
from tests.web.conftest import MakeClient

TOKEN = "s3cret-token-for-the-console"


def test_metrics_are_served_behind_the_console_auth(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    world = make_world(sqlite_url, metrics=True)
    client = make_client(world, auth=TokenAuth(TOKEN))

    assert client.get("/metrics").status_code == 401  # a scraper is never sent to a form
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'dynflow_pool_size{queue="default"} 5.0' in answer.text
    assert "dynflow_plans{" in answer.text


def test_metrics_auth_of_their_own(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    world = make_world(sqlite_url, metrics=True)
    scraper = "another-token-for-prometheus"
    client = make_client(world, auth=TokenAuth(TOKEN), metrics_auth=TokenAuth(scraper))

    console_token = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", headers=console_token).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {scraper}"}).is_success
    assert (
        client.get("/api/plans", headers={"Authorization": f"Bearer {scraper}"}).status_code == 401
    )
    open_client = make_client(world, auth=TokenAuth(TOKEN), metrics_auth=NO_AUTH)
    assert open_client.get("/metrics").status_code == 200


def test_metrics_off_is_a_404_that_says_how(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    client = make_client(make_world(sqlite_url))
    answer = client.get("/metrics")
    assert answer.status_code == 404
    assert "World(metrics=True)" in answer.json()["detail"]


class Fine(Action):
    def run(self, event: Any = None) -> None:
        pass


class Broken(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("broken")


def test_scraped_metrics_parse_and_count_what_happened(
    sqlite_url: str, make_world: Callable[..., World], make_client: MakeClient
) -> None:
    world = make_world(sqlite_url, metrics=True)
    assert world.trigger(Fine).finished.result(10).result is PlanResult.SUCCESS
    assert world.trigger(Fine).finished.result(10).result is PlanResult.SUCCESS
    assert world.trigger(Broken).finished.result(10).state is PlanState.PAUSED
    client = make_client(world, auth=TokenAuth(TOKEN))
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    fine, broken = Fine.class_name(), Broken.class_name()
    assert samples[("dynflow_steps_total", (("action", fine), ("result", "success")))] == 2
    assert samples[("dynflow_steps_total", (("action", broken), ("result", "error")))] == 1
    assert samples[("dynflow_plans_finished_total", (("result", "success"),))] == 2
    assert samples[("dynflow_plans", (("state", "paused"),))] == 1
    assert samples[("dynflow_plans", (("state", "stopped"),))] == 2
    durations = samples[("dynflow_step_duration_seconds_count", (("action", fine),))]
    assert durations == 2
