"""``dynflow plans trigger``: start a plan from a script, on any executor world."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner

from dynflow import PlanResult, PlanState, World
from dynflow.cli.main import app

runner = CliRunner()
MakeWorld = Callable[..., World]
MODULE = "tests.cli.trigger_actions"


def invoke(url: str, *args: str) -> Any:
    return runner.invoke(app, ["plans", "trigger", *args, "--database-url", url])


def test_trigger_by_dotted_name_waits_and_prints_json(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    done = invoke(
        db_url,
        f"{MODULE}.Greet",
        "--args",
        '["web-1"]',
        "--kwargs",
        '{"punctuation": "?"}',
        "--wait",
        "30",
        "--json",
    )
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    plan = executor.persistence.load_execution_plan(document["execution_plan_id"])
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert plan.entry_action.output == {"greeting": "hello web-1?"}
    assert document["plan"]["result"] == "success"


def test_trigger_by_class_name_with_import_does_not_wait(
    db_url: str, make_world: MakeWorld
) -> None:
    executor = make_world(db_url, connector="database")
    started = invoke(db_url, "Greet", "--import", MODULE, "--args", '["db-1"]')
    assert started.exit_code == 0, started.output
    plan_id = started.output.split()[1]
    assert started.output.startswith(f"plan {plan_id} triggered")
    plan = executor.persistence.load_execution_plan(plan_id)
    assert plan.entry_action.input == {"name": "db-1", "punctuation": "!"}


def test_a_failing_plan_exits_1_when_waited_for(db_url: str, make_world: MakeWorld) -> None:
    make_world(db_url, connector="database")
    failed = invoke(db_url, f"{MODULE}.Breaks", "--wait", "30")
    assert failed.exit_code == 1
    assert "paused/error" in failed.output


def test_bad_input_is_a_usage_error_and_nothing_is_stored(
    db_url: str, make_world: MakeWorld
) -> None:
    executor = make_world(db_url, connector="database")
    for args, message in [
        (["NoSuchAction", "--import", MODULE], "no action class 'NoSuchAction'"),
        ([f"{MODULE}.Nope"], "no action class"),
        (["Greet", "--import", "tests.cli.no_such_module"], "cannot import"),
        ([f"{MODULE}.Greet", "--args", '{"name": 1}'], "must be a JSON array"),
        ([f"{MODULE}.Greet", "--kwargs", "[1]"], "must be a JSON object"),
        ([f"{MODULE}.Greet", "--args", "[oops"], "not JSON"),
    ]:
        result = invoke(db_url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), result.output
    assert executor.persistence.find_execution_plans() == []


def test_a_planning_failure_names_the_kept_plan(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    refused = invoke(db_url, f"{MODULE}.Refuses")
    assert refused.exit_code == 1
    [plan] = executor.persistence.find_execution_plans()
    assert f"planning plan {plan.id} failed" in " ".join(refused.output.split())
    assert "nothing to do here" in refused.output
    wrong = invoke(db_url, f"{MODULE}.Greet", "--kwargs", '{"colour": "red"}')
    assert wrong.exit_code == 1
    assert "colour" in wrong.output


def test_shell_completion_script_is_offered() -> None:
    shown = runner.invoke(app, ["--show-completion", "bash"], prog_name="dynflow")
    assert shown.exit_code == 0, shown.output
    assert "complete" in shown.output
    assert "_DYNFLOW_COMPLETE" in shown.output
