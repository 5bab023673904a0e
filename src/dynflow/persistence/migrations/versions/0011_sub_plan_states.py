"""Sub-plans: a parent's children found by (caller plan, caller action, state, result) from one
index, so
that its planned children to start are read a few at a time and its counts by state
and result from the index, not from every child's row.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_dynflow_execution_plans_caller_state",
        "dynflow_execution_plans",
        ["caller_execution_plan_id", "caller_action_id", "state", "result"],
    )
    op.drop_index("ix_dynflow_execution_plans_caller", table_name="dynflow_execution_plans")


def downgrade() -> None:
    op.create_index(
        "ix_dynflow_execution_plans_caller", "dynflow_execution_plans", ["caller_execution_plan_id"]
    )
    op.drop_index("ix_dynflow_execution_plans_caller_state", table_name="dynflow_execution_plans")
