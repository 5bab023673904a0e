"""Apply the shipped Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dynflow.persistence.sql.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "dynflow_alembic_version"


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    with database.read() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already."""
    if revision == "head" and current_revision(database) == head_revision():
        return
    with _migrating(database) as connection:
        command.upgrade(_config(connection), revision)


def downgrade(database: Database, revision: str) -> None:
    """Take the schema back to ``revision``; ``"base"`` drops every dynflow table."""
    with _migrating(database) as connection:
        command.downgrade(_config(connection), revision)


@contextmanager
def _migrating(database: Database) -> Iterator[sa.Connection]:
    """A write transaction under the migration lock, which is taken before Alembic
    reads the version and released only after the transaction committed."""
    with database.migration_lock(), database.write() as connection:
        yield connection
