"""Limits: one row per key (its limit, locked while counted) and one per step and key
(waiting, holding, or spent inside a rate window).

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import DOUBLE, UTCDateTime, exact_string

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynflow_limits",
        sa.Column("key", exact_string(255), primary_key=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("rate", sa.Integer(), nullable=True),
        sa.Column("per", DOUBLE, nullable=True),
        **MYSQL,
    )
    op.create_table(
        "dynflow_limit_slots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", exact_string(255), nullable=False),
        sa.Column("execution_plan_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("world_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("granted_at", UTCDateTime(), nullable=True),
        **MYSQL,
    )
    op.create_index("ix_dynflow_limit_slots_key", "dynflow_limit_slots", ["key", "state"])
    op.create_index("ix_dynflow_limit_slots_world", "dynflow_limit_slots", ["world_id"])
    op.create_index("ix_dynflow_limit_slots_plan", "dynflow_limit_slots", ["execution_plan_id"])


def downgrade() -> None:
    op.drop_table("dynflow_limit_slots")
    op.drop_table("dynflow_limits")
