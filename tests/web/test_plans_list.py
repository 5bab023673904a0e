"""The plans list: filters by entry action class, label text and start time; sorting;
auto-refresh; counts per state from one grouped query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dynflow import Action, World
from dynflow.persistence.tables import execution_plans
from dynflow.web import console


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


def test_sorting_by_duration_in_the_list_and_the_api(
    client: TestClient, console_world: World
) -> None:
    deploy, backup = _plans(console_world)
    with console_world.persistence.db.write() as connection:
        for plan_id, seconds in ((deploy, 30.0), (backup, 5.0)):
            connection.execute(
                sa.update(execution_plans)
                .where(execution_plans.c.id == plan_id)
                .values(real_time=seconds)
            )
    assert _ids(client, sort="duration", desc="false") == [backup, deploy]
    assert _ids(client, sort="duration", desc="true") == [deploy, backup]
    page = client.get("/", params={"sort": "duration", "desc": "true"}).text
    assert page.index("Deploy web-1") < page.index("Nightly backup")
    assert "&sort=duration&desc=false" in page  # the header sorts the other way next


def test_counts_stop_at_the_cap_and_pages_stop_at_the_depth(
    client: TestClient, console_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plans(console_world)
    _plans(console_world)  # four stopped plans
    monkeypatch.setattr(console, "COUNT_CAP", 2)
    monkeypatch.setattr(console, "MAX_DEPTH", 2)
    listing = client.get("/api/plans", params={"per_page": 1}).json()
    assert listing["counts"]["stopped"] == 2
    assert listing["capped"] == ["stopped"]
    assert (listing["total"], listing["total_capped"], listing["pages"]) == (2, True, 2)
    assert client.get("/api/plans", params={"per_page": 1, "page": 2}).status_code == 200
    deep = client.get("/api/plans", params={"per_page": 1, "page": 3})
    assert deep.status_code == 400
    assert "narrow the filters" in deep.text
    html = client.get("/", params={"per_page": 1}).text
    assert "2+ plan(s), page 1 of 2" in html
    assert "2+</a>" in html  # the stopped count
    monkeypatch.setattr(console, "COUNT_CAP", 10)
    exact = client.get("/api/plans", params={"per_page": 1}).json()
    assert (exact["total"], exact["total_capped"], exact["capped"]) == (4, False, [])
    assert exact["pages"] == 2  # still at most MAX_DEPTH plans deep
    # under filters: one pass over at most FILTERED_COUNT plans
    assert client.get("/api/plans", params={"text": "p"}).json()["total"] == 4
    monkeypatch.setattr(console, "FILTERED_COUNT", 3)
    partial = client.get("/api/plans", params={"text": "p", "per_page": 1}).json()
    assert (partial["total"], partial["total_capped"], partial["capped"]) == (3, True, ["stopped"])
    # a label (result, start time) filter alone: counted from each state's index
    by_label = client.get("/api/plans", params={"label": "Deploy web-1"}).json()
    assert (by_label["total"], by_label["total_capped"]) == (2, False)
    monkeypatch.setattr(console, "COUNT_CAP", 1)
    by_label = client.get("/api/plans", params={"label": "Deploy web-1"}).json()
    assert (by_label["total"], by_label["capped"]) == (1, ["stopped"])
