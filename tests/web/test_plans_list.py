"""The plans list: filters by entry action class, label text and start time; sorting;
auto-refresh; counts per state from one grouped query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from dynflow import Action, World


class Deploy(Action):
    label = "Deploy web-1"

    def run(self, event: Any = None) -> None:
        pass


class Backup(Action):
    label = "Nightly backup"

    def run(self, event: Any = None) -> None:
        pass


def _plans(console_world: World) -> tuple[str, str]:
    deploy = console_world.trigger(Deploy).finished.result(10)
    backup = console_world.trigger(Backup).finished.result(10)
    return deploy.id, backup.id


def _ids(client: TestClient, **params: Any) -> list[str]:
    answer = client.get("/api/plans", params=params)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def test_filter_by_entry_action_class(client: TestClient, console_world: World) -> None:
    deploy, backup = _plans(console_world)
    assert _ids(client, action_class=Deploy.class_name()) == [deploy]
    assert _ids(client, action_class=Backup.class_name()) == [backup]
    assert _ids(client, action_class="no.such.Action") == []


def test_free_text_over_labels_ignores_case_and_wildcards(
    client: TestClient, console_world: World
) -> None:
    deploy, backup = _plans(console_world)
    assert _ids(client, text="BACKUP") == [backup]
    assert _ids(client, text="web-") == [deploy]
    assert _ids(client, text="%") == []  # a wildcard is matched literally
    assert _ids(client, text="_") == []


def test_filter_by_start_time(client: TestClient, console_world: World) -> None:
    deploy, backup = _plans(console_world)
    now = datetime.now(UTC)
    assert set(_ids(client, started_after=(now - timedelta(hours=1)).isoformat())) == {
        deploy,
        backup,
    }
    assert _ids(client, started_after=(now + timedelta(hours=1)).isoformat()) == []
    assert _ids(client, started_before=(now - timedelta(hours=1)).isoformat()) == []
    assert client.get("/api/plans", params={"started_after": "yesterday"}).status_code in (
        400,
        422,
    )


def test_sorting_by_allowed_columns_only(client: TestClient, console_world: World) -> None:
    deploy, backup = _plans(console_world)
    assert _ids(client, sort="label", desc="false") == [deploy, backup]  # "Deploy" < "Nightly"
    assert _ids(client, sort="label", desc="true") == [backup, deploy]
    assert client.get("/api/plans", params={"sort": "id; DROP TABLE"}).status_code in (400, 422)
    page = client.get("/", params={"sort": "label", "desc": "false"})
    assert page.status_code == 200
    assert page.text.index("Deploy web-1") < page.text.index("Nightly backup")
    assert client.get("/", params={"sort": "nonsense"}).status_code == 400


def test_counts_per_state_and_auto_refresh(client: TestClient, console_world: World) -> None:
    _plans(console_world)
    listing = client.get("/api/plans", params={"text": "deploy"}).json()
    assert listing["total"] == 1
    assert listing["counts"]["stopped"] == 1
    assert sum(listing["counts"].values()) == 1
    assert 'data-refresh="5"' in client.get("/", params={"refresh": "true"}).text
    assert "data-refresh" not in client.get("/").text


def test_worlds_show_the_heartbeat_age(client: TestClient, console_world: World) -> None:
    (world,) = [w for w in client.get("/api/worlds").json() if w["id"] == console_world.id]
    assert 0 <= world["heartbeat_age"] < 60
    assert " s ago" in client.get("/worlds").text


def test_the_filter_form_with_every_field_empty_lists_all_plans(
    client: TestClient, console_world: World
) -> None:
    deploy, backup = _plans(console_world)
    form = {
        "state": "",
        "result": "",
        "label": "",
        "action_class": "",
        "text": "",
        "started_after": "",
        "started_before": "",
    }
    page = client.get("/", params=form)
    assert page.status_code == 200, page.text
    assert deploy in page.text
    assert backup in page.text


def test_the_filter_form_takes_a_browser_time_without_zone_as_utc(
    client: TestClient, console_world: World
) -> None:
    deploy, backup = _plans(console_world)
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    hour_ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = client.get("/", params={"started_after": hour_ago, "started_before": ""})
    assert page.status_code == 200
    assert deploy in page.text
    assert backup in page.text
    assert f'value="{hour_ago}"' in page.text  # the form keeps what was asked
    page = client.get("/", params={"started_after": hour_ahead})
    assert page.status_code == 200
    assert deploy not in page.text
    bad = client.get("/", params={"started_after": "yesterday"})
    assert bad.status_code == 400
    assert "YYYY-MM-DD" in bad.text
