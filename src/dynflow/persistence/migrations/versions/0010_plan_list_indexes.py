"""The plans list over millions of plans: each column it sorts by is indexed together
with the plan id (the tie-break of its order), so that a page is read in order from
an index whatever the column and direction, and so is a capped count per state.
These indexes replace the ones on the column alone (their first column serves the
same equality filters); the duration (``real_time``) gets one.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "dynflow_execution_plans"
#: the column alone, replaced by (column, id)
REPLACED = ("state", "result", "label", "started_at", "ended_at")


def upgrade() -> None:
    for column in REPLACED:
        op.create_index(f"ix_{TABLE}_{column}_id", TABLE, [column, "id"])
        op.drop_index(f"ix_{TABLE}_{column}", table_name=TABLE)
    op.create_index(f"ix_{TABLE}_real_time_id", TABLE, ["real_time", "id"])


def downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_real_time_id", table_name=TABLE)
    for column in REPLACED:
        op.create_index(f"ix_{TABLE}_{column}", TABLE, [column])
        op.drop_index(f"ix_{TABLE}_{column}_id", table_name=TABLE)
