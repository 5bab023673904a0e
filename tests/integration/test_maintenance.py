"""Upkeep of the engine's tables: PostgreSQL's VACUUM and ANALYZE when autovacuum is
behind (or off), one world at a time; nothing to do on the other databases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dynflow import World
from dynflow.errors import ConfigurationError
from dynflow.persistence import open_persistence
from dynflow.persistence.postgres.maintenance import due
from dynflow.services.maintenance import MAINTENANCE_LOCK
from tests.conftest import make_url
from tests.support import eventually

#: the counters of pg_stat_user_tables the test reads
_COUNTERS = sa.text(
    "SELECT n_dead_tup, n_mod_since_analyze, last_vacuum, last_analyze "
    "FROM pg_stat_user_tables WHERE relname = :name AND schemaname = current_schema()"
)


def test_due_follows_autovacuums_default_thresholds() -> None:
    counters = [
        ("queue", 0, 51, 51),  # dead rows beyond 50: vacuumed (and analyzed)
        ("quiet_queue", 0, 50, 50),  # not beyond: left alone
        ("plans", 1000, 100, 151),  # changed beyond 50 + 10 %: analyzed only
        ("steady", 1000, 249, 150),  # within both
        ("churned", 1000, 251, 0),  # dead beyond 50 + 20 %
    ]
    assert due(counters) == (["churned", "queue"], ["plans"])


def _churn(url: str, rows: int) -> None:
    """Insert and delete ``rows`` envelopes, and make the counters visible at once."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO dynflow_envelopes (receiver_id, data) "
                    "SELECT 'nobody', 'x' FROM generate_series(1, :n)"
                ),
                {"n": rows},
            )
            connection.execute(sa.text("DELETE FROM dynflow_envelopes"))
            connection.execute(sa.text("SELECT pg_stat_force_next_flush()"))
    finally:
        engine.dispose()


def _counters(url: str, table: str) -> sa.Row[tuple[int, int, object, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            row: sa.Row[tuple[int, int, object, object]] = connection.execute(
                _COUNTERS, {"name": table}
            ).one()
            return row
    finally:
        engine.dispose()


def test_postgres_vacuums_a_churned_queue_once(tmp_path: Path) -> None:
    url = make_url("postgresql", tmp_path)
    persistence = open_persistence(url)
    try:
        persistence.migrate()
        persistence.maintain()  # whatever the schema and the earlier tests left
        before = _counters(url, "dynflow_envelopes")
        _churn(url, 500)
        eventually(lambda: _counters(url, "dynflow_envelopes").n_dead_tup >= 500)
        done = persistence.maintain()
        assert "dynflow_envelopes" in done
        after = _counters(url, "dynflow_envelopes")
        assert after.last_vacuum not in (None, before.last_vacuum)
        assert after.last_analyze not in (None, before.last_analyze)
        eventually(lambda: _counters(url, "dynflow_envelopes").n_dead_tup == 0)
        assert "dynflow_envelopes" not in persistence.maintain()  # nothing left to do
    finally:
        persistence.close()


def test_no_upkeep_where_the_database_keeps_up(tmp_path: Path) -> None:
    persistence = open_persistence(make_url("sqlite", tmp_path))
    try:
        persistence.migrate()
        assert persistence.maintain() == []
    finally:
        persistence.close()


def test_one_world_at_a_time(tmp_path: Path, make_world: Callable[..., World]) -> None:
    url = make_url("postgresql", tmp_path)
    first = make_world(url, executor=False, maintenance_interval=0)
    second = make_world(url, executor=False, maintenance_interval=0)
    first.coordinator.acquire(MAINTENANCE_LOCK, "tables")
    try:
        assert second.maintenance.run_once() is None  # first's turn
    finally:
        first.coordinator.release(MAINTENANCE_LOCK, "tables")
    assert second.maintenance.run_once() is not None
    assert not second.coordinator.find_locks(lock_class=MAINTENANCE_LOCK)


def test_a_world_vacuums_periodically(tmp_path: Path, make_world: Callable[..., World]) -> None:
    url = make_url("postgresql", tmp_path)
    make_world(url, executor=False, maintenance_interval=0)  # the schema
    before = _counters(url, "dynflow_envelopes").last_vacuum
    _churn(url, 500)
    make_world(url, executor=False, maintenance_interval=0.2)
    eventually(lambda: _counters(url, "dynflow_envelopes").last_vacuum not in (None, before))


def test_maintenance_interval_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="maintenance_interval"):
        World(make_url("sqlite", tmp_path), maintenance_interval=-1)
