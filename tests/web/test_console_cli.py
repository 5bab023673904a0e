"""``dynflow console``: binds safely, serves the console app with uvicorn."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dynflow.cli.main import app

runner = CliRunner()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``uvicorn.run`` was asked to serve; each call is tried with a test client
    while the console's world is still alive."""
    seen: dict[str, Any] = {}

    def run(asgi: Any, **options: Any) -> None:
        seen.update(options)
        with TestClient(asgi, base_url="http://127.0.0.1:8642") as client:
            seen["anonymous"] = client.get("/api/plans").status_code
            elsewhere = {"Host": "rebound.example"}
            seen["other host"] = client.get("/api/plans", headers=elsewhere).status_code
            bearer = {"Authorization": "Bearer long-enough-token"}
            seen["bearer"] = client.get("/api/plans", headers=bearer).status_code

    monkeypatch.setattr(uvicorn, "run", run)
    return seen


def test_console_refuses_another_address_without_a_token(
    sqlite_url: str, served: dict[str, Any]
) -> None:
    result = runner.invoke(app, ["console", "--database-url", sqlite_url, "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "without --token" in result.output
    assert served == {}


def test_console_on_localhost_without_token_needs_no_auth(
    sqlite_url: str, served: dict[str, Any]
) -> None:
    result = runner.invoke(app, ["console", "--database-url", sqlite_url, "--port", "9999"])
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 9999)
    assert served["anonymous"] == 200
    assert served["other host"] == 400  # no DNS rebinding


def test_console_allowed_host_option(sqlite_url: str, served: dict[str, Any]) -> None:
    options = ["--database-url", sqlite_url, "--allowed-host", "rebound.example"]
    result = runner.invoke(app, ["console", *options])
    assert result.exit_code == 0, result.output
    assert served["other host"] == 200
    assert served["anonymous"] == 400  # only the named host now


def test_console_with_a_token_requires_it(sqlite_url: str, served: dict[str, Any]) -> None:
    result = runner.invoke(
        app,
        ["console", "--database-url", sqlite_url, "--host", "0.0.0.0"],
        env={"DYNFLOW_CONSOLE_TOKEN": "long-enough-token"},
    )
    assert result.exit_code == 0, result.output
    assert served["host"] == "0.0.0.0"
    assert served["anonymous"] == 401
    assert served["bearer"] == 200


def test_console_refuses_a_short_token(sqlite_url: str, served: dict[str, Any]) -> None:
    result = runner.invoke(app, ["console", "--database-url", sqlite_url, "--token", "abc"])
    assert result.exit_code == 2
    assert "at least 8" in result.output
    assert served == {}


def test_dynflow_imports_without_the_web_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('fastapi', 'starlette', 'jinja2', 'uvicorn', 'itsdangerous'):\n"
        "    sys.modules[name] = None\n"
        "import dynflow, dynflow.cli.main\n"
        "assert 'dynflow.web' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
