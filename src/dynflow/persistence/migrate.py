"""Apply the shipped Alembic migrations (Alembic is imported only when they are used)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dynflow.persistence.sql.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "dynflow_alembic_version"
#: the newest shipped migration, known without Alembic (tests/contract/test_migrations.py
#: checks that it is Alembic's head)
HEAD = "0011"


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.read() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def schema_revision(database: Database) -> str | None:
    """The schema's revision, read without importing Alembic (for commands that only
    read: see ``HEAD``); ``None`` without a dynflow schema."""
    with database.read() as connection:
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return None
        revision = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        found = revision.scalar()
        return None if found is None else str(found)


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already."""
    if revision == "head" and current_revision(database) == head_revision():
        return
    from alembic import command

    with _migrating(database) as connection:
        command.upgrade(_config(connection), revision)


def downgrade(database: Database, revision: str) -> None:
    """Take the schema back to ``revision``; ``"base"`` drops every dynflow table."""
    from alembic import command

    with _migrating(database) as connection:
        command.downgrade(_config(connection), revision)


@contextmanager
def _migrating(database: Database) -> Iterator[sa.Connection]:
    """A write transaction under the migration lock, which is taken before Alembic
    reads the version and released only after the transaction committed."""
    with database.migration_lock(), database.write() as connection:
        yield connection
