"""Retries: a step's attempts (runs started), when a waiting step's next attempt is
due, and the errors of its retried attempts.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import JSONText, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dynflow_steps") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("errors", JSONText(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dynflow_steps") as batch:
        batch.drop_column("errors")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
