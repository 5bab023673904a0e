"""PostgreSQL upkeep of the engine's tables: statistics and dead rows.

The engine's tables change fast: envelopes and lock records are written and
deleted all the time (queues), plans grow by the thousands. PostgreSQL's
autovacuum keeps their statistics and dead rows in check, but it may be off, or
behind. Without statistics the planner sizes a table from what it was when a
statement was first planned, and a prepared statement keeps that plan (a scan of
every plan to load one, planned when there were twenty) until the table is
analyzed; without vacuum every look at a queue walks over each row it ever held.

:func:`maintain` does what autovacuum would, with its default thresholds, for the
engine's tables only: ``ANALYZE`` a table changed by more than a tenth of its
rows since its statistics, ``VACUUM`` one with more dead rows than a fifth of its
live ones. It never waits for a table another vacuum holds (``SKIP_LOCKED``).
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import metadata

#: autovacuum's defaults: rows changed (dead) beyond ``base + scale * live rows``
ANALYZE_BASE, ANALYZE_SCALE = 50, 0.1
VACUUM_BASE, VACUUM_SCALE = 50, 0.2

_COUNTERS = sa.text(
    "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze "
    "FROM pg_stat_user_tables WHERE schemaname = current_schema() "
    "AND relname = ANY(CAST(:names AS text[]))"
)


def due(counters: Iterable[tuple[str, int, int, int]]) -> tuple[list[str], list[str]]:
    """(tables to vacuum and analyze, tables only to analyze) by their counters:
    (name, live rows, dead rows, rows changed since the last analyze)."""
    vacuum, analyze = [], []
    for name, live, dead, changed in counters:
        if dead > VACUUM_BASE + VACUUM_SCALE * live:
            vacuum.append(name)
        elif changed > ANALYZE_BASE + ANALYZE_SCALE * live:
            analyze.append(name)
    return sorted(vacuum), sorted(analyze)


def maintain(db: Database) -> list[str]:
    """Vacuum and analyze the engine's tables that need it; the tables done."""
    names = sorted(metadata.tables)
    with db.read() as connection:
        counters = connection.execute(_COUNTERS, {"names": names}).all()
    vacuum, analyze = due((r[0], int(r[1]), int(r[2]), int(r[3])) for r in counters)
    if not vacuum and not analyze:
        return []
    # not in a transaction: VACUUM refuses to run in one
    with db.write_statement() as connection:
        if vacuum:
            connection.exec_driver_sql(f"VACUUM (ANALYZE, SKIP_LOCKED) {', '.join(vacuum)}")
        if analyze:
            connection.exec_driver_sql(f"ANALYZE (SKIP_LOCKED) {', '.join(analyze)}")
    return vacuum + analyze
