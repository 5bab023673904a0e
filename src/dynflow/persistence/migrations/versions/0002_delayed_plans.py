"""Delayed plans: what to plan, and when.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import JSONText, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UUID = sa.String(36)
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynflow_delayed_plans",
        sa.Column("execution_plan_id", UUID, primary_key=True),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("start_before", UTCDateTime(), nullable=True),
        sa.Column("args", JSONText(), nullable=False),
        **MYSQL,
    )
    op.create_index("ix_dynflow_delayed_plans_start_at", "dynflow_delayed_plans", ["start_at"])


def downgrade() -> None:
    op.drop_table("dynflow_delayed_plans")
