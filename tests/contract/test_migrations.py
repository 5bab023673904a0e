"""Migrations produce exactly the model in ``dynflow.persistence.tables``, on every database."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dynflow.errors import ConfigurationError
from dynflow.persistence import migrate, open_persistence
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import metadata
from tests.conftest import (
    MYSQL_SERVER,
    POSTGRES_SERVER,
    _drop_database,
    _ensure_database,
    server_url,
)

VERSION_TABLE = migrate.VERSION_TABLE
MIGRATION_DATABASE = f"dynflow_migration_test_{os.getpid()}"  # concurrent runs never meet


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, with no dynflow table at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    server_url(request.param)  # skips (or fails in CI) when the server is unreachable
    server = POSTGRES_SERVER if request.param == "postgresql" else MYSQL_SERVER
    yield _ensure_database(server, MIGRATION_DATABASE, fresh=True)
    _drop_database(server, MIGRATION_DATABASE)


@pytest.fixture
def database(fresh_url: str) -> Iterator[Database]:
    database = Database(fresh_url)
    yield database
    database.dispose()


def _not_version_table(name: str | None, type_: str, parent_names: Any) -> bool:
    return not (type_ == "table" and name == VERSION_TABLE)


def differences(database: Database, target: sa.MetaData = metadata) -> list[Any]:
    """What autogenerate would change to turn the database into ``target``."""
    with database.writer.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "include_name": _not_version_table,
            },
        )
        return list(compare_metadata(context, target))


def table_names(database: Database) -> set[str]:
    with database.writer.connect() as connection:
        return set(sa.inspect(connection).get_table_names())


def test_upgrade_produces_exactly_the_model(database: Database) -> None:
    assert table_names(database) == set()
    assert migrate.current_revision(database) is None
    assert migrate.schema_revision(database) is None

    migrate.upgrade(database)

    assert differences(database) == []
    assert table_names(database) == set(metadata.tables) | {VERSION_TABLE}
    assert migrate.current_revision(database) == migrate.head_revision()
    # what the reading commands check, without Alembic
    assert migrate.schema_revision(database) == migrate.HEAD == migrate.head_revision()


def test_the_comparison_sees_a_model_that_differs(database: Database) -> None:
    migrate.upgrade(database)
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["dynflow_steps"].append_column(sa.Column("extra", sa.Integer()))
    sa.Table("dynflow_unknown", changed, sa.Column("id", sa.Integer(), primary_key=True))

    found = differences(database, changed)

    assert {(d[0], getattr(d[-1], "name", None)) for d in found if isinstance(d, tuple)} == {
        ("add_column", "extra"),
        ("add_table", "dynflow_unknown"),
    }


def test_upgrade_is_idempotent(database: Database, fresh_url: str) -> None:
    migrate.upgrade(database)
    persistence = open_persistence(fresh_url)
    try:
        persistence.migrate()  # at head already: nothing to do
        with database.write() as connection:
            connection.execute(
                sa.insert(metadata.tables["dynflow_coordinator_records"]),
                [{"class": "world", "id": "w1", "owner_id": "w1", "data": {"kept": True}}],
            )
        migrate.upgrade(database)
        # naming the revision goes through Alembic again, which finds nothing to do
        migrate.upgrade(database, migrate.head_revision())
    finally:
        persistence.close()

    assert differences(database) == []
    assert migrate.current_revision(database) == migrate.head_revision()
    with database.writer.connect() as connection:
        rows = connection.execute(
            sa.select(metadata.tables["dynflow_coordinator_records"].c.data)
        ).all()
    assert [row.data for row in rows] == [{"kept": True}]


def test_downgrade_to_base_removes_the_tables(database: Database) -> None:
    migrate.upgrade(database)

    migrate.downgrade(database, "base")

    assert table_names(database) - {VERSION_TABLE} == set()
    assert migrate.current_revision(database) is None

    migrate.upgrade(database)  # and back again
    assert differences(database) == []


def test_every_revision_goes_down_and_up_again(database: Database) -> None:
    migrate.upgrade(database)
    script = ScriptDirectory(str(migrate.MIGRATIONS))
    revisions = [r.revision for r in script.walk_revisions()]  # head first
    assert revisions[0] == migrate.head_revision()

    for previous in [*revisions[1:], "base"]:
        migrate.downgrade(database, previous)
        assert migrate.current_revision(database) == (None if previous == "base" else previous)
    for revision in reversed(revisions):
        migrate.upgrade(database, revision)
        assert migrate.current_revision(database) == revision

    assert differences(database) == []


def test_processes_migrating_at_once_all_succeed(fresh_url: str) -> None:
    """Several worlds starting together on an empty database: one migrates, none fails."""
    databases = [Database(fresh_url) for _ in range(3)]
    start = threading.Barrier(len(databases))
    failures: list[BaseException] = []

    def upgrade(database: Database) -> None:
        start.wait()
        try:
            migrate.upgrade(database)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        for database in databases:
            assert migrate.current_revision(database) == migrate.head_revision()
        assert differences(databases[0]) == []
    finally:
        for database in databases:
            database.dispose()


def test_a_migration_waiting_for_the_lock_sees_the_committed_version(fresh_url: str) -> None:
    """The lock is held until the migration is committed: a process that waits for it
    then reads the new version and runs nothing again (MySQL's DDL is not
    transactional: a step run twice fails, e.g. "Can't DROP INDEX")."""
    first, second = Database(fresh_url), Database(fresh_url)
    second_done, started = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def upgrade_second() -> None:
        try:
            migrate.upgrade(second)
        except BaseException as exc:
            failures.append(exc)
        finally:
            second_done.set()

    migrated = threading.Event()

    def executing(_connection: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if VERSION_TABLE in statement and statement.lstrip().startswith(("INSERT", "UPDATE")):
            migrated.set()

    def committing(_connection: sa.Connection) -> None:
        # the first migration is about to commit: the second starts now, and gets a
        # moment to run (with the lock held, it cannot: it waits for this commit)
        if not migrated.is_set() or started.is_set():
            return
        started.set()
        threading.Thread(target=upgrade_second).start()
        second_done.wait(1.0)

    sa.event.listen(first.writer, "before_cursor_execute", executing)
    sa.event.listen(first.writer, "commit", committing)
    try:
        migrate.upgrade(first)
        assert started.is_set()
        assert second_done.wait(30)
        assert failures == []
        assert migrate.current_revision(second) == migrate.head_revision()
        assert differences(first) == []
    finally:
        first.dispose()
        second.dispose()


def test_postgresql_steps_leave_room_for_updates_and_envelopes_stay_uncompressed() -> None:
    server_url("postgresql")  # storage options exist on PostgreSQL only
    name = f"{MIGRATION_DATABASE}_storage"
    database = Database(_ensure_database(POSTGRES_SERVER, name, fresh=True))
    try:
        migrate.upgrade(database)
        query = sa.text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)")
        with database.read() as connection:
            names = ["dynflow_steps", "dynflow_envelopes"]
            options = {r[0]: r[1] for r in connection.execute(query, {"names": names})}
    finally:
        database.dispose()
        _drop_database(POSTGRES_SERVER, name)
    assert options["dynflow_steps"] == ["fillfactor=70"]
    assert options["dynflow_envelopes"] == ["toast_tuple_target=8160"]


def test_run_is_for_postgresql_only(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'run.sqlite3'}")
    try:
        with pytest.raises(
            ConfigurationError, match=r"Database\.run is for PostgreSQL, not sqlite"
        ):
            database.run(sa.text("SELECT 1"), {})
    finally:
        database.dispose()
