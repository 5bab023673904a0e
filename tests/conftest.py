"""Shared fixtures: real databases (SQLite always; PostgreSQL and MariaDB when reachable,
required when CI=true) and a world factory that terminates what it made."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import World
from dynflow.persistence.tables import metadata

POSTGRES_SERVER = os.environ.get(
    "DYNFLOW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/"
)
MYSQL_SERVER = os.environ.get("DYNFLOW_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/")
#: one database per test run, so that concurrent runs on one server never meet
TEST_DATABASE = f"dynflow_test_{os.getpid()}"
IN_CI = os.environ.get("CI") == "true"

_server_checked: dict[str, str | None] = {}


def _ensure_database(server: str, name: str, *, fresh: bool = False) -> str:
    """Create database ``name`` on ``server`` (dropping it first if ``fresh``); its URL."""
    url = sa.make_url(server)
    admin = sa.create_engine(
        url.set(database="postgres" if url.get_backend_name() == "postgresql" else None),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as connection:
            if url.get_backend_name() == "postgresql":
                exists = connection.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).first()
                if exists and fresh:
                    connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                    exists = None
                if not exists:
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            else:
                if fresh:
                    connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
                connection.execute(
                    sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
                )
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def server_url(kind: str) -> str:
    """The test database URL for ``kind``, or skip (fail in CI) when unreachable."""
    server = POSTGRES_SERVER if kind == "postgresql" else MYSQL_SERVER
    if kind not in _server_checked:
        try:
            _ensure_database(server, TEST_DATABASE)
            _server_checked[kind] = None
        except Exception as exc:
            _server_checked[kind] = f"{kind} unreachable at {server}: {exc}"
    problem = _server_checked[kind]
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem} (required when CI=true)")
        pytest.skip(problem)
    return sa.make_url(server).set(database=TEST_DATABASE).render_as_string(hide_password=False)


def _drop_database(server: str, name: str) -> None:
    url = sa.make_url(server)
    postgres = url.get_backend_name() == "postgresql"
    admin = sa.create_engine(
        url.set(database="postgres" if postgres else None), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            if postgres:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop this run's databases at the end of the session."""
    yield
    for kind, problem in _server_checked.items():
        if problem is None:
            _drop_database(POSTGRES_SERVER if kind == "postgresql" else MYSQL_SERVER, TEST_DATABASE)


def _clean(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            inspector = sa.inspect(connection)
            present = set(inspector.get_table_names())
            for table in reversed(metadata.sorted_tables):
                if table.name in present:
                    connection.execute(table.delete())
    finally:
        engine.dispose()


def make_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'dynflow.sqlite3'}"
    url = server_url(kind)
    _clean(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each of the three supported databases, empty."""
    return make_url(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite, PostgreSQL and MariaDB, empty: integration tests run on all three."""
    return make_url(request.param, tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return make_url("sqlite", tmp_path)


@pytest.fixture
def make_world() -> Iterator[Callable[..., World]]:
    """``make_world(url, **options)``; every world made is terminated after the test."""
    worlds: list[World] = []

    def factory(url: str, **options: Any) -> World:
        options.setdefault("terminate_timeout", 10)
        world = World(url, **options)
        worlds.append(world)
        return world

    yield factory
    for world in reversed(worlds):
        world.terminate()


@pytest.fixture
def world(db_url: str, make_world: Callable[..., World]) -> World:
    """A threaded world on SQLite, then on PostgreSQL."""
    return make_world(db_url)


@pytest.fixture(params=["write-when-idle", "writer-thread"])
def commit_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The threaded executor as it runs (a batch made while no message waits is written
    by the core thread itself), or with every batch written by its writer thread while
    the core handles the next messages."""
    from dynflow.executor.threaded import ThreadedExecutor

    monkeypatch.setattr(ThreadedExecutor, "write_when_idle", request.param == "write-when-idle")
