"""Plans, actions, steps, execution history and coordinator records.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import DOUBLE, JSONText, UTCDateTime, exact_string

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UUID = sa.String(36)
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynflow_execution_plans",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("label", exact_string(255), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("result", sa.String(20), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("execution_time", DOUBLE, nullable=False),
        sa.Column("real_time", DOUBLE, nullable=False),
        sa.Column("caller_execution_plan_id", UUID, nullable=True),
        sa.Column("caller_action_id", sa.Integer(), nullable=True),
        sa.Column("data", JSONText(), nullable=False),
        **MYSQL,
    )
    for name, column in [
        ("state", "state"),
        ("result", "result"),
        ("label", "label"),
        ("started_at", "started_at"),
        ("caller", "caller_execution_plan_id"),
    ]:
        op.create_index(f"ix_dynflow_execution_plans_{name}", "dynflow_execution_plans", [column])

    op.create_table(
        "dynflow_actions",
        sa.Column("execution_plan_id", UUID, primary_key=True),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("action_class", sa.String(255), nullable=False),
        sa.Column("label", exact_string(255), nullable=False),
        sa.Column("input", JSONText(), nullable=False),
        sa.Column("output", JSONText(), nullable=False),
        sa.Column("plan_step_id", sa.Integer(), nullable=True),
        sa.Column("run_step_id", sa.Integer(), nullable=True),
        sa.Column("finalize_step_id", sa.Integer(), nullable=True),
        sa.Column("parent_action_id", sa.Integer(), nullable=True),
        **MYSQL,
    )

    op.create_table(
        "dynflow_steps",
        sa.Column("execution_plan_id", UUID, primary_key=True),
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("action_class", sa.String(255), nullable=False),
        sa.Column("phase", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("error", JSONText(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("execution_time", DOUBLE, nullable=False),
        sa.Column("real_time", DOUBLE, nullable=False),
        sa.Column("progress_done", DOUBLE, nullable=False),
        sa.Column("progress_weight", DOUBLE, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_dynflow_steps_state", "dynflow_steps", ["state"])

    op.create_table(
        "dynflow_execution_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("execution_plan_id", UUID, nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("world_id", UUID, nullable=True),
        **MYSQL,
    )
    op.create_index(
        "ix_dynflow_execution_history_plan", "dynflow_execution_history", ["execution_plan_id"]
    )

    op.create_table(
        "dynflow_coordinator_records",
        sa.Column("class", exact_string(100), primary_key=True),
        sa.Column("id", exact_string(255), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("data", JSONText(), nullable=False),
        **MYSQL,
    )
    op.create_index(
        "ix_dynflow_coordinator_records_owner", "dynflow_coordinator_records", ["owner_id"]
    )


def downgrade() -> None:
    for table in [
        "dynflow_coordinator_records",
        "dynflow_execution_history",
        "dynflow_steps",
        "dynflow_actions",
        "dynflow_execution_plans",
    ]:
        op.drop_table(table)
