"""The console's Schedules page and ``/api/schedules``."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.testclient import TestClient

from dynflow.clock import ManualClock
from dynflow.testing import InThreadWorld
from tests.cli.trigger_actions import Greet
from tests.web.conftest import MakeClient, csrf_token

START = datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)


def test_schedules_page_and_api(sqlite_url: str, make_client: MakeClient) -> None:
    world = InThreadWorld(sqlite_url, clock=ManualClock(utc_start=START), delayed_interval=10)
    try:
        world.schedule("minutely", "* * * * *", Greet, "<b>web</b>")
        world.schedule("nightly", "0 3 * * *", Greet, "db", timezone="Europe/Prague")
        world.clock.advance(150)  # 10:01 and 10:02 are due
        client: TestClient = make_client(world)
        listed = client.get("/api/schedules").json()
        assert [s["name"] for s in listed] == ["minutely", "nightly"]
        minutely = listed[0]
        assert minutely["next_runs"] == [
            "2026-11-29T10:04:00Z",
            "2026-11-29T10:05:00Z",
            "2026-11-29T10:06:00Z",
        ]
        assert len(minutely["recent_plans"]) == 3  # 10:03 was due at 10:03:00 too
        assert minutely["recent_plans"][0]["id"] == minutely["last_plan_id"]
        assert all(p["result"] == "success" for p in minutely["recent_plans"])

        page = client.get("/schedules")
        assert page.status_code == 200
        assert "minutely" in page.text
        assert 'href="/schedules"' in page.text  # in the navigation

        token = csrf_token(client, "/schedules")
        paused = client.post("/schedules/minutely/pause", data={"csrf_token": token})
        assert paused.status_code == 200
        assert "schedule minutely paused" in paused.text
        assert [s.paused for s in world.schedules()] == [True, False]
        refused = client.post("/schedules/minutely/resume", data={})
        assert refused.status_code == 403  # CSRF as for every POST
        headers = {"X-CSRF-Token": token}
        assert client.post("/api/schedules/minutely/resume", headers=headers).json()["ok"]
        assert [s.paused for s in world.schedules()] == [False, False]
        deleted = client.post("/api/schedules/nightly/delete", headers=headers)
        assert deleted.status_code == 200
        assert [s.name for s in world.schedules()] == ["minutely"]
        missing = client.post("/api/schedules/nightly/delete", headers=headers)
        assert missing.status_code == 404
        assert "no schedule 'nightly'" in missing.json()["detail"]
        paths = client.get("/api/openapi.json").json()["paths"]
        assert "/api/schedules" in paths
        assert "/api/schedules/{name}/pause" in paths
    finally:
        world.terminate()
