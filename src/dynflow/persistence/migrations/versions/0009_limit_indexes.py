"""Limits: a key's line read in order from an index (key, state, id), so that a grant
pass reads the first waiters of a key and its holders, never the whole line.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dynflow_limit_slots_line", "dynflow_limit_slots", ["key", "state", "id"])
    op.drop_index("ix_dynflow_limit_slots_key", table_name="dynflow_limit_slots")


def downgrade() -> None:
    op.create_index("ix_dynflow_limit_slots_key", "dynflow_limit_slots", ["key", "state"])
    op.drop_index("ix_dynflow_limit_slots_line", table_name="dynflow_limit_slots")
