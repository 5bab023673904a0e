"""Alembic environment: always run with a connection handed in by dynflow."""

from alembic import context

from dynflow.persistence.tables import metadata

VERSION_TABLE = "dynflow_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
