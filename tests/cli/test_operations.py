"""``dynflow plans`` and ``dynflow worlds`` against a database with a live executor world."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from typer.testing import CliRunner

from dynflow import Action, Cancellable, Retry, World
from dynflow.cli.main import app
from dynflow.clock import ManualClock
from tests.support import eventually

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
    assert "backoff, next attempt at " in shown.output
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
    executor = make_world(db_url, connector="database")
    listed = invoke(db_url, "worlds", "list")
    assert listed.exit_code == 0, listed.output
    assert executor.id in listed.output
    assert "executor" in listed.output

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
