"""Trigger options: a plan's idempotency key (unique), priority, deadline, labels and
the code version of the world that planned it; the ``after`` edges between plans.

Revision ID: 0007
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import JSONText, UTCDateTime, exact_string

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

PLANS = "dynflow_execution_plans"
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    with op.batch_alter_table(PLANS) as batch:
        batch.add_column(sa.Column("key", exact_string(255), nullable=True))
        batch.add_column(sa.Column("code_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("deadline_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("labels", JSONText(), nullable=True))
        batch.create_index("ux_dynflow_execution_plans_key", ["key"], unique=True)
        batch.create_index("ix_dynflow_execution_plans_deadline_at", ["deadline_at"])
    op.create_table(
        "dynflow_plan_dependencies",
        sa.Column("execution_plan_id", sa.String(36), primary_key=True),
        sa.Column("after_plan_id", sa.String(36), primary_key=True),
        sa.Index("ix_dynflow_plan_dependencies_after", "after_plan_id"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("dynflow_plan_dependencies")
    with op.batch_alter_table(PLANS) as batch:
        batch.drop_index("ix_dynflow_execution_plans_deadline_at")
        batch.drop_index("ux_dynflow_execution_plans_key")
        batch.drop_column("labels")
        batch.drop_column("deadline_at")
        batch.drop_column("priority")
        batch.drop_column("code_version")
        batch.drop_column("key")
