"""Envelopes: messages between worlds for the database connector.

Revision ID: 0003
Revises: 0002
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from dynflow.persistence.types import LONG_TEXT

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mariadb_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "dynflow_envelopes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("receiver_id", sa.String(36), nullable=False),
        sa.Column("data", LONG_TEXT, nullable=False),
        **MYSQL,
    )
    op.create_index("ix_dynflow_envelopes_receiver", "dynflow_envelopes", ["receiver_id"])


def downgrade() -> None:
    op.drop_table("dynflow_envelopes")
