"""``dynflow plans revert``: reverts through an executor world; exit codes as the
other plan commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynflow import Action, World
from tests.cli.test_operations import invoke

MakeWorld = Callable[..., World]


class Undone(Action):
    def run(self, event: Any = None) -> None:
        self.output["done"] = True

    def revert(self) -> None:
        self.output["undone"] = True


def test_plans_revert_reverts_a_stopped_plan(db_url: str, make_world: MakeWorld) -> None:
    executor = make_world(db_url, connector="database")
    done = executor.trigger(Undone).finished.result(10)

    reverted = invoke(db_url, "plans", "revert", done.id)

    assert reverted.exit_code == 0, reverted.output
    assert f"plan {done.id} is stopped/reverted" in reverted.output
    plan = executor.persistence.load_execution_plan(done.id)
    assert (plan.state, plan.result) == ("stopped", "reverted")
    shown = invoke(db_url, "plans", "show", done.id)
    assert "reverted" in shown.output


def test_plans_revert_of_an_unknown_plan_exits_1(db_url: str, make_world: MakeWorld) -> None:
    make_world(db_url, connector="database")
    result = invoke(db_url, "plans", "revert", "no-such-plan")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "not found" in result.output
