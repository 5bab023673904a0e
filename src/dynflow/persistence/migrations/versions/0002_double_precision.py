"""Durations and progress in double precision on MySQL/MariaDB, where FLOAT is single.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = {
    "dynflow_execution_plans": ("execution_time", "real_time"),
    "dynflow_steps": ("execution_time", "real_time", "progress_done", "progress_weight"),
}


def _change(new: sa.types.TypeEngine[Any], old: sa.types.TypeEngine[Any]) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return  # FLOAT is double precision already on PostgreSQL and SQLite
    for table, columns in COLUMNS.items():
        for column in columns:
            op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=False)


def upgrade() -> None:
    _change(mysql.DOUBLE(), mysql.FLOAT())


def downgrade() -> None:
    _change(mysql.FLOAT(), mysql.DOUBLE())
