"""``dynflow schedules list|pause|resume|delete``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner

from dynflow import World
from dynflow.cli.main import app
from tests.cli.trigger_actions import Greet

runner = CliRunner()
MakeWorld = Callable[..., World]


def invoke(url: str, *args: str) -> Any:
    return runner.invoke(app, ["schedules", *args, "--database-url", url])


def test_list_pause_resume_delete(db_url: str, make_world: MakeWorld) -> None:
    world = make_world(db_url, executor=False)
    world.schedule("nightly", "0 3 * * *", Greet, "db-1", timezone="Europe/Prague")
    listed = invoke(db_url, "list", "--json")
    assert listed.exit_code == 0, listed.output
    [document] = json.loads(listed.stdout)
    assert (document["name"], document["cron"], document["paused"]) == (
        "nightly",
        "0 3 * * *",
        False,
    )
    assert document["action_class"] == Greet.class_name()
    assert document["args"] == ["db-1"]
    assert len(document["next_runs"]) == 3
    assert document["next_runs"][0] == document["next_run_at"]

    assert invoke(db_url, "pause", "nightly").exit_code == 0
    [paused] = world.schedules()
    assert paused.paused
    text = invoke(db_url, "list")
    assert "nightly" in text.output
    assert "paused" in text.output

    resumed = invoke(db_url, "resume", "nightly")
    assert resumed.exit_code == 0, resumed.output
    assert "next run at" in resumed.output
    [again] = world.schedules()
    assert not again.paused

    assert invoke(db_url, "delete", "nightly").exit_code == 0
    assert world.schedules() == []
    for command in ("pause", "resume", "delete"):
        missing = invoke(db_url, command, "nightly")
        assert missing.exit_code == 1
        assert "no schedule 'nightly'" in missing.output
