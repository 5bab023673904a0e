"""The ``dynflow`` command: demo, db upgrade and the executor's options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from dynflow import PlanResult, PlanState
from dynflow.cli.main import app
from dynflow.persistence import open_persistence
from dynflow.persistence.migrate import head_revision

runner = CliRunner()


def test_demo_runs_the_orchestration_resumes_and_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    result = runner.invoke(app, ["demo", "--fast", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "The plan paused" in result.output
    assert "package mirror timed out" in result.output
    assert "stopped/success" in result.output
    assert str(tmp_path / "demo.sqlite3") in result.output.replace("\n", "")

    persistence = open_persistence(url)
    (plan,) = persistence.find_execution_plans()
    persistence.close()
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    history = [entry.name for entry in plan.execution_history]
    assert history == [
        "start execution",
        "pause execution",
        "start execution",
        "finish execution",
    ]
    machines = [a for a in plan.actions if a.action_class.endswith("ProvisionMachine")]
    assert [a.label for a in machines] == [
        "Provision demo-web",
        "Provision demo-app",
        "Provision demo-db",
    ]
    register = next(a for a in plan.actions if a.action_class.endswith("RegisterInventory"))
    assert register.output["registered"] == ["demo-web", "demo-app", "demo-db"]


def test_demo_reports_a_bad_database_url() -> None:
    result = runner.invoke(app, ["demo", "--fast", "--database-url", "nosuchdb://x"])
    assert result.exit_code == 1
    assert "unsupported database" in result.output


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"dynflow_execution_plans", "dynflow_steps", "dynflow_actions"} <= tables


def test_db_upgrade_explains_an_unreachable_database() -> None:
    url = "postgresql+psycopg://dynflow:hunter2@127.0.0.1:1/nowhere"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "cannot connect to database" in result.output
    assert "hunter2" not in result.output


def test_executor_auto_execute_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--no-auto-execute``: the executor world starts without running what was left."""
    import dynflow.cli.executor as executor_cli

    seen: list[dict[str, Any]] = []

    def serve(url: str, **options: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(executor_cli, "serve", serve)
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    for flags, expected in (([], True), (["--no-auto-execute"], False)):
        result = runner.invoke(app, ["executor", "--database-url", url, *flags])
        assert result.exit_code == 0, result.output
        assert seen[-1]["auto_execute"] is expected
