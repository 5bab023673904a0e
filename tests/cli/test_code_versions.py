"""The code-version commands and options: ``dynflow executor --code-version``,
``dynflow plans set-code-version``, ``plans list --code-version`` and the version
column of ``worlds list``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from dynflow import Action, World
from dynflow.cli import executor as executor_cli
from tests.cli.test_operations import invoke, runner

MakeWorld = Callable[..., World]


class Noted(Action):
    def run(self, event: Any = None) -> None:
        self.output["ok"] = True


def test_executor_takes_its_code_version_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dynflow.cli.main import app

    seen: list[str | None] = []

    def serve(url: str, **options: Any) -> int:
        seen.append(options["code_version"])
        return 0

    monkeypatch.setattr(executor_cli, "serve", serve)
    assert runner.invoke(app, ["executor", "--code-version", "v3"]).exit_code == 0
    result = runner.invoke(app, ["executor"], env={"DYNFLOW_CODE_VERSION": "v4"})
    assert result.exit_code == 0
    result = runner.invoke(app, ["executor"], env={"DYNFLOW_CODE_VERSION": ""})
    assert result.exit_code == 0
    assert seen == ["v3", "v4", None]


def test_set_code_version_lists_by_version_and_worlds_show_theirs(
    db_url: str, make_world: MakeWorld
) -> None:
    executor = make_world(db_url, connector="database", code_version="v1")
    planner = make_world(db_url, executor=False, code_version="v1")
    plan = planner.plan(Noted)

    moved = invoke(db_url, "plans", "set-code-version", plan.id, "v2")
    assert moved.exit_code == 0, moved.output
    assert "now of code version v2" in moved.output
    assert executor.persistence.load_execution_plan(plan.id).code_version == "v2"
    listed = json.loads(invoke(db_url, "plans", "list", "--code-version", "v2", "--json").stdout)
    assert [p["id"] for p in listed["items"]] == [plan.id]
    assert (
        json.loads(invoke(db_url, "plans", "list", "--code-version", "v1", "--json").stdout)[
            "items"
        ]
        == []
    )

    cleared = invoke(db_url, "plans", "set-code-version", plan.id, "--none")
    assert cleared.exit_code == 0, cleared.output
    assert executor.persistence.load_execution_plan(plan.id).code_version is None
    both = invoke(db_url, "plans", "set-code-version", plan.id, "v3", "--none")
    assert both.exit_code == 2
    stopped = executor.execute(plan.id).result(20)
    refused = invoke(db_url, "plans", "set-code-version", stopped.id, "v3")
    assert refused.exit_code == 1
    assert "only a paused or planned plan" in refused.output

    worlds = json.loads(invoke(db_url, "worlds", "list", "--json").stdout)
    versions = {w["id"]: w["code_version"] for w in worlds}
    assert (versions[executor.id], versions[planner.id]) == ("v1", "v1")
    table = invoke(db_url, "worlds", "list")
    assert table.exit_code == 0, table.output
    assert "version" in table.output
    assert "v1" in table.output
