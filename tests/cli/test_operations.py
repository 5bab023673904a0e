"""``dynflow plans`` and ``dynflow worlds`` against a database with a live executor world."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from dynflow import Action, Cancellable, Retry, World
from dynflow.cli.main import app
from dynflow.clock import ManualClock
from tests.conftest import (
    MYSQL_SERVER,
    POSTGRES_SERVER,
    _drop_database,
    _ensure_database,
    server_url,
)
from tests.support import eventually, suspended_step

runner = CliRunner()
MakeWorld = Callable[..., World]
ATTEMPTS: dict[str, int] = {}


class FailsOnce(Action):
    label = "Fails once"

    def run(self, event: Any = None) -> None:
        ATTEMPTS[self.execution_plan_id] = ATTEMPTS.get(self.execution_plan_id, 0) + 1
        if ATTEMPTS[self.execution_plan_id] == 1:
            raise RuntimeError("first attempt fails")


class RetriedLater(Action):
    retry = Retry(attempts=4, backoff=600.0, max_backoff=600.0, jitter=0.0)

    def run(self, event: Any = None) -> None:
        raise ConnectionError("inventory refused")


class AlwaysFails(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("always")


class Waits(Cancellable, Action):
    def run(self, event: Any = None) -> None:
        self.suspend()

    def cancel(self) -> None:
        self.output["cancelled"] = True


def invoke(url: str, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--database-url", url], env={"COLUMNS": "200"})
    return result


def test_plans_list_show_and_resume(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    paused = executor.trigger(FailsOnce).finished.result(10)
    assert paused.state == "paused"

    listed = invoke(db_url, "plans", "list", "--state", "paused")
    assert listed.exit_code == 0, listed.output
    assert paused.id in listed.output
    assert "paused/error" in listed.output
    assert "1 of 1 plan(s)" in listed.output

    shown = invoke(db_url, "plans", "show", paused.id)
    assert shown.exit_code == 0, shown.output
    assert "first attempt fails" in shown.output
    assert "start execution" in shown.output
    assert executor.id in shown.output

    resumed = invoke(db_url, "plans", "resume", paused.id)
    assert resumed.exit_code == 0, resumed.output
    assert "stopped/success" in resumed.output
    assert executor.persistence.load_execution_plan(paused.id).result == "success"


def test_plans_list_by_key_and_show_the_trigger_options(
    sqlite_url: str, make_world: MakeWorld
) -> None:
    world = make_world(sqlite_url, executor=False, code_version="v7")
    plan = world.options(key="order-42", priority=3, labels={"team": "web"}).plan(FailsOnce)
    world.plan(FailsOnce)

    listed = invoke(sqlite_url, "plans", "list", "--key", "order-42")
    assert listed.exit_code == 0, listed.output
    assert plan.id in listed.output
    assert "1 of 1 plan(s)" in listed.output
    shown = invoke(sqlite_url, "plans", "show", plan.id)
    assert shown.exit_code == 0, shown.output
    for line in ("key: order-42", "priority: 3", "labels: team=web", "code version: v7"):
        assert line in shown.output
    as_json = json.loads(invoke(sqlite_url, "plans", "show", plan.id, "--json").output)
    assert (as_json["key"], as_json["priority"]) == ("order-42", 3)


def test_plans_show_tells_a_waiting_steps_attempts_and_next_attempt(
    db_url: str, make_world: MakeWorld
) -> None:
    executor = make_world(db_url, clock=ManualClock())
    plan_id = executor.trigger(RetriedLater).execution_plan_id

    def waiting() -> bool:
        plan = executor.persistence.load_execution_plan(plan_id)
        return any(s.state == "waiting" for s in plan.steps.values())

    eventually(waiting)
    shown = invoke(db_url, "plans", "show", plan_id)
    assert shown.exit_code == 0, shown.output
    assert "waiting" in shown.output
    assert "ConnectionError: inventory refused" in shown.output
    assert "backoff until " in shown.output
    executor.halt(plan_id).result(10)


def test_plans_skip_then_resume_ends_warning(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    paused = executor.trigger(AlwaysFails).finished.result(10)
    step = next(s.id for s in paused.steps.values() if s.state == "error")
    skipped = invoke(db_url, "plans", "skip", paused.id, str(step))
    assert skipped.exit_code == 0, skipped.output
    assert invoke(db_url, "plans", "resume", paused.id).exit_code == 0
    assert executor.persistence.load_execution_plan(paused.id).result == "warning"


def test_plans_cancel_reaches_the_executing_world(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    triggered = executor.trigger(Waits)
    eventually(
        lambda: any(
            s.state == "suspended"
            for s in executor.persistence.load_execution_plan(
                triggered.execution_plan_id
            ).steps.values()
        )
    )
    cancelled = invoke(db_url, "plans", "cancel", triggered.execution_plan_id)
    assert cancelled.exit_code == 0, cancelled.output
    plan = triggered.finished.result(10)
    assert (plan.state, plan.result) == ("stopped", "cancelled")


def test_errors_are_reported_without_a_traceback(db_url: str, make_world: MakeWorld) -> None:
    make_world(db_url, connector="database")
    result = invoke(db_url, "plans", "show", "no-such-plan")
    assert result.exit_code == 1
    assert "error:" in result.output
    assert "not found" in result.output
    assert "Traceback" not in result.output


def test_worlds_list_check_and_invalidate(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database", pool_size=3)
    listed = invoke(db_url, "worlds", "list")
    assert listed.exit_code == 0, listed.output
    assert executor.id in listed.output
    assert "executor" in listed.output
    assert "default 0/3" in listed.output  # busy/size at its last heartbeat
    as_json = json.loads(invoke(db_url, "worlds", "list", "--json").stdout)
    mine = next(w for w in as_json if w["id"] == executor.id)
    assert (mine["pool_busy"], mine["pool_sizes"]) == ({"default": 0}, {"default": 3})

    pinged = invoke(db_url, "worlds", "check", executor.id)
    assert pinged.exit_code == 0, pinged.output
    assert "answers" in pinged.output

    checked = invoke(db_url, "worlds", "check")
    assert checked.exit_code == 0
    assert "0 world(s) invalidated" in checked.output

    gone = "00000000-0000-0000-0000-000000000000"
    refused = invoke(db_url, "worlds", "check", gone)
    assert refused.exit_code == 1
    assert "not registered" in refused.output


def test_reading_commands_never_create_a_database(tmp_path: Any) -> None:
    missing = tmp_path / "typo.sqlite3"
    for args in (["plans", "list"], ["plans", "show", "some-id"], ["worlds", "list"]):
        result = invoke(f"sqlite:///{missing}", *args)
        assert result.exit_code == 1, result.output
        assert f"no SQLite database at {missing}" in " ".join(result.output.split())
        assert not missing.exists()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An existing database of each kind, with no dynflow table at all."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        engine = sa.create_engine(url)  # creates the file
        engine.connect().close()
        engine.dispose()
        yield url
        return
    server_url(request.param)  # skips (or fails in CI) when the server is unreachable
    server = POSTGRES_SERVER if request.param == "postgresql" else MYSQL_SERVER
    name = f"dynflow_cli_{os.getpid()}"
    yield _ensure_database(server, name, fresh=True)
    _drop_database(server, name)


def test_reading_commands_never_create_the_schema(empty_url: str) -> None:
    db_url = empty_url
    for args in (["plans", "list"], ["worlds", "list"]):
        result = invoke(db_url, *args)
        assert result.exit_code == 1, result.output
        assert "has no dynflow schema: run `dynflow db upgrade`" in " ".join(result.output.split())
        assert len(result.output.strip().splitlines()) <= 3  # a message, not a traceback
    upgraded = invoke(db_url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert invoke(db_url, "plans", "list").exit_code == 0


def test_an_unknown_filter_value_is_a_usage_error(db_url: str, make_world: MakeWorld) -> None:
    make_world(db_url)
    for option in ("--state", "--result"):
        result = invoke(db_url, "plans", "list", option, "bogus")
        assert result.exit_code == 2, result.output
        assert "unknown value 'bogus': use one of" in " ".join(result.output.split())


def test_pages_count_from_one(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    ids = [executor.trigger(AlwaysFails).finished.result(10).id for _ in range(3)]
    listed = [invoke(db_url, "plans", "list", "--per-page", "2", "--page", p) for p in "12"]
    assert [r.exit_code for r in listed] == [0, 0]
    shown = [sum(i in r.output for i in ids) for r in listed]
    assert shown == [2, 1]
    assert "2 of 3 plan(s), page 1" in listed[0].output
    assert invoke(db_url, "plans", "list", "--page", "0").exit_code == 2


def test_piped_output_is_not_cut(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    plan = executor.trigger(Labelled).finished.result(10)
    assert len(plan.label) > 100
    result = runner.invoke(app, ["plans", "list", "--database-url", db_url], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert plan.label.strip() in result.output
    assert plan.id in result.output


class Labelled(Action):
    label = "a label long enough to be cut at eighty columns, " * 3

    def run(self, event: Any = None) -> None:
        pass


class WaitsForApproval(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["event"] = event


def test_plans_event_delivers_json_to_a_suspended_step(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    triggered = executor.trigger(WaitsForApproval)
    plan_id = triggered.execution_plan_id
    step = suspended_step(executor, plan_id)
    sent = invoke(db_url, "plans", "event", plan_id, str(step), "--data", '{"ok": [1, "\\u00e9"]}')
    assert sent.exit_code == 0, sent.output
    assert f"event delivered to step {step} of plan {plan_id}" in sent.output
    plan = triggered.finished.result(10)
    assert plan.entry_action.output == {"event": {"ok": [1, "é"]}}

    again = invoke(db_url, "plans", "event", plan_id, str(step), "--data", "{}")
    assert again.exit_code == 1
    assert "the event was not delivered" in " ".join(again.output.split())
    bad = invoke(db_url, "plans", "event", plan_id, str(step), "--data", "{oops")
    assert bad.exit_code == 2
    assert "not JSON" in " ".join(bad.output.split())


def test_json_output_is_one_document_and_nothing_else(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    paused = executor.trigger(AlwaysFails).finished.result(10)

    listed = invoke(db_url, "plans", "list", "--json", "--state", "paused")
    assert listed.exit_code == 0, listed.output
    document = json.loads(listed.stdout)  # the whole of stdout is the document
    assert document["total"] == 1
    assert (document["page"], document["pages"]) == (1, 1)
    assert [p["id"] for p in document["items"]] == [paused.id]
    assert document["items"][0]["state"] == "paused"

    shown = json.loads(invoke(db_url, "plans", "show", paused.id, "--json").stdout)
    assert shown["id"] == paused.id
    failed = [s for s in shown["steps"] if s["state"] == "error"]
    assert [s["error"]["message"] for s in failed] == ["always"]
    assert [h["name"] for h in shown["execution_history"]][:1] == ["start execution"]

    worlds = json.loads(invoke(db_url, "worlds", "list", "--json").stdout)
    assert [w["id"] for w in worlds] == [executor.id]
    assert worlds[0]["executor"] is True

    missing = invoke(db_url, "plans", "show", "no-such-plan", "--json")
    assert missing.exit_code == 1
    assert missing.stdout == ""  # the one-line message goes to standard error


def test_reading_commands_work_on_a_read_only_database_like_a_replica(
    tmp_path: Any, make_world: MakeWorld
) -> None:
    """What operations/scaling.md promises: the reading commands can be pointed at a
    read replica; here a PostgreSQL database whose every transaction is read-only."""
    server_url("postgresql")  # skips (or fails in CI) when the server is unreachable
    name = f"dynflow_replica_{os.getpid()}"
    url = _ensure_database(POSTGRES_SERVER, name, fresh=True)
    try:
        world = make_world(url)
        plan = world.trigger(FailsOnce).finished.result(10)
        world.terminate()
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(
                    sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
                )
        finally:
            admin.dispose()
        for args in (
            ["plans", "list"],
            ["plans", "show", plan.id],
            ["worlds", "list"],
            ["limits", "list"],
            ["schedules", "list"],
        ):
            result = invoke(url, *args)
            assert result.exit_code == 0, (args, result.output)
        assert plan.id in invoke(url, "plans", "list").output
        refused = invoke(url, "plans", "resume", plan.id)  # a command that writes
        assert refused.exit_code != 0
        assert "read-only" in refused.output
    finally:
        _drop_database(POSTGRES_SERVER, name)
