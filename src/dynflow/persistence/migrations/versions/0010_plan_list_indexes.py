"""The plans list over millions of plans: a page is read in order from an index
whatever the sort column and direction, and so is a page under an equality filter on
state, result or label in the default order (the latest started first).

- (started_at, id), (ended_at, id), (real_time, id): each time column with the plan
  id that breaks its ties;
- (state, started_at, id), (result, started_at, id), (label, started_at, id): the
  plans of one state (result, label) in start order, which is also the order of a
  list sorted by that column (its ties broken by start time, then id);
- (state, ended_at, id), (state, real_time, id), (state, result, started_at, id),
  (state, label, started_at, id): the plans of one state (a link of the list's
  counts) in any other order. Without them the database reads such a page from
  the index of the sort column, expecting the state's plans spread over it, while
  those of a live state all sit in one corner (not ended, result pending): it
  would read most other plans first.

They replace the indexes on the column alone (their first column serves the same
equality filters).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "dynflow_execution_plans"
#: new index -> its columns
INDEXES = {
    f"ix_{TABLE}_started_at_id": ["started_at", "id"],
    f"ix_{TABLE}_ended_at_id": ["ended_at", "id"],
    f"ix_{TABLE}_real_time_id": ["real_time", "id"],
    f"ix_{TABLE}_state_started": ["state", "started_at", "id"],
    f"ix_{TABLE}_result_started": ["result", "started_at", "id"],
    f"ix_{TABLE}_label_started": ["label", "started_at", "id"],
    f"ix_{TABLE}_state_ended": ["state", "ended_at", "id"],
    f"ix_{TABLE}_state_real_time": ["state", "real_time", "id"],
    f"ix_{TABLE}_state_result": ["state", "result", "started_at", "id"],
    f"ix_{TABLE}_state_label": ["state", "label", "started_at", "id"],
}
#: the columns whose index alone they replace
REPLACED = ("state", "result", "label", "started_at", "ended_at")


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, TABLE, columns)
    for column in REPLACED:
        op.drop_index(f"ix_{TABLE}_{column}", table_name=TABLE)


def downgrade() -> None:
    for column in REPLACED:
        op.create_index(f"ix_{TABLE}_{column}", TABLE, [column])
    for name in INDEXES:
        op.drop_index(name, table_name=TABLE)
