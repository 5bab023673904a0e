"""Schedules: recurring plans by cron expression; an index on plans' ended_at
(retention deletes by it).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import JSONText, UTCDateTime, exact_string

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dynflow_schedules",
        sa.Column("name", exact_string(200), primary_key=True),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("action_class", sa.String(255), nullable=False),
        sa.Column("args", JSONText(), nullable=False),
        sa.Column("overlap", sa.String(10), nullable=False),
        sa.Column("catch_up", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_due_at", UTCDateTime(), nullable=True),
        sa.Column("last_plan_id", sa.String(36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        mysql_charset="utf8mb4",
        mariadb_charset="utf8mb4",
    )
    op.create_index("ix_dynflow_schedules_next_run_at", "dynflow_schedules", ["next_run_at"])
    op.create_index("ix_dynflow_execution_plans_ended_at", "dynflow_execution_plans", ["ended_at"])


def downgrade() -> None:
    op.drop_index("ix_dynflow_execution_plans_ended_at", table_name="dynflow_execution_plans")
    op.drop_index("ix_dynflow_schedules_next_run_at", table_name="dynflow_schedules")
    op.drop_table("dynflow_schedules")
