"""``dynflow executor`` that cannot start: it exits non-zero with a clear message on stderr
(bad ``--queue``, an ``--import`` that fails, an unreachable database)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.multiprocess.conftest import REPO_ROOT, START_TIMEOUT, Executors, executor_command


def run_executor(url: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        executor_command(url, *args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("spec", ["slow", "slow=0"])
def test_a_bad_queue_is_refused_before_touching_the_database(tmp_path: Path, spec: str) -> None:
    database = tmp_path / "never.sqlite3"

    result = run_executor(f"sqlite:///{database}", "--queue", spec)

    assert result.returncode != 0
    assert f"cannot start: --queue {spec!r}: expected NAME=SIZE with SIZE >= 1" in result.stderr
    assert not database.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--lease", "4"), "lease (4.0 s) must be longer than heartbeat_interval (5.0 s)"),
        (("--ping-timeout", "0"), "ping_timeout must be > 0 seconds, got 0.0"),
    ],
)
def test_timing_that_would_make_it_look_dead_is_refused_before_touching_the_database(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    database = tmp_path / "never.sqlite3"

    result = run_executor(f"sqlite:///{database}", *args)

    assert result.returncode != 0
    assert f"cannot start: {message}" in result.stderr
    assert not database.exists()


def test_an_unimportable_module_is_named(tmp_path: Path) -> None:
    result = run_executor(f"sqlite:///{tmp_path / 'x.sqlite3'}", "--import", "no_such_actions.x")

    assert result.returncode != 0
    assert "cannot start: --import no_such_actions.x: No module named 'no_such_actions'" in (
        result.stderr
    )


def test_a_module_that_raises_on_import_is_named_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "broken_actions.py").write_text("raise RuntimeError('no credentials here')\n")

    result = run_executor(
        f"sqlite:///{tmp_path / 'x.sqlite3'}", "--import", "broken_actions", cwd=tmp_path
    )

    assert result.returncode != 0
    assert (
        "cannot start: --import broken_actions failed: RuntimeError: no credentials here"
        in result.stderr
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://dynflow:s3cret@127.0.0.1:1/nodb",
        "mysql+pymysql://dynflow:s3cret@127.0.0.1:1/nodb",
    ],
)
def test_an_unreachable_database_is_named_without_its_password(url: str) -> None:
    result = run_executor(url, "--import", "tests.multiprocess.remote_actions")

    assert result.returncode != 0
    shown = url.replace(":s3cret@", ":***@")
    assert f"cannot start: cannot connect to database {shown}" in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "never.sqlite3"
    result = run_executor(f"sqlite:///{database}", "--log-format", "yaml")
    assert result.returncode == 2
    assert "cannot start: unknown log format 'yaml': use text or json" in result.stderr
    assert not database.exists()


def test_log_format_json_writes_one_object_per_line(
    tmp_path: Path, executors: Callable[[str], Executors]
) -> None:
    url = f"sqlite:///{tmp_path / 'json-logs.sqlite3'}"
    executor = executors(url).start("--log-format", "json", "--log-level", "INFO")
    assert executor.stop() == 0
    lines = [line for line in executor.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    serving = [e for e in entries if "serving queues" in e["message"]]
    assert serving
    assert serving[0]["level"] == "INFO"
    assert serving[0]["logger"] == "dynflow.cli.executor"
    assert {"time", "level", "logger", "message"} <= set(entries[-1])
