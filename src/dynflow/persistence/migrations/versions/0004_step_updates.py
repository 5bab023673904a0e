"""Cheaper step updates: no index on the steps' state (no query reads steps by state,
and it made every state change write index entries); on PostgreSQL the steps table
leaves room in its pages so that a step's updates stay on its page (HOT updates
that write no index entries at all), and envelopes up to 8 KB are kept as they are
(short-lived rows: compressing them costs more than it saves).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: percent of a steps page filled by inserts; the rest is for the updates of its steps
STEPS_FILLFACTOR = 70


def upgrade() -> None:
    op.drop_index("ix_dynflow_steps_state", table_name="dynflow_steps")
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE dynflow_steps SET (fillfactor = {STEPS_FILLFACTOR})")
        op.execute("ALTER TABLE dynflow_envelopes SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE dynflow_envelopes RESET (toast_tuple_target)")
        op.execute("ALTER TABLE dynflow_steps RESET (fillfactor)")
    op.create_index("ix_dynflow_steps_state", "dynflow_steps", ["state"])
