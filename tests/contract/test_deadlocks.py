"""A write the database ended to break a deadlock is told apart from other failures,
and a world's unregistration (its last write) is tried again after one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pymysql  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.errors import PersistenceError
from dynflow.persistence import Persistence
from dynflow.persistence.sql.locks import deadlocked


def _failure(orig: BaseException) -> PersistenceError:
    error = PersistenceError("database failed")
    error.__cause__ = sa.exc.OperationalError("DELETE ...", {}, orig)
    return error


def test_a_deadlock_is_told_apart_from_other_failures() -> None:
    assert deadlocked(_failure(pymysql.err.OperationalError(1213, "Deadlock found")))
    assert deadlocked(_failure(psycopg.errors.DeadlockDetected("deadlock detected")))
    assert not deadlocked(_failure(pymysql.err.OperationalError(2013, "Lost connection")))
    assert not deadlocked(_failure(psycopg.errors.QueryCanceled("lock timeout")))
    assert not deadlocked(PersistenceError("no cause"))


def test_unregistering_is_tried_again_after_a_deadlock_and_deletes_the_locks(
    persistence: Persistence, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = Coordinator(persistence.db, str(uuid.uuid4()))
    other = Coordinator(persistence.db, str(uuid.uuid4()))
    for coordinator in (world, other):
        coordinator.register_world(executor=True, queues=("default",), meta={})
    world.acquire(EXECUTION_LOCK, "plan-1")
    other.acquire(EXECUTION_LOCK, "plan-2")
    write, attempts = persistence.db.write, []

    @contextmanager
    def deadlocking_once(**options: Any) -> Iterator[sa.Connection]:
        attempts.append(options)
        if len(attempts) == 1:
            raise _failure(pymysql.err.OperationalError(1213, "Deadlock found"))
        with write(**options) as connection:
            yield connection

    monkeypatch.setattr(persistence.db, "write", deadlocking_once)
    world.unregister_world()
    monkeypatch.undo()

    assert len(attempts) == 2
    assert [w.id for w in other.find_worlds()] == [other.world_id]
    assert [(lock.id, lock.owner_id) for lock in other.find_locks()] == [("plan-2", other.world_id)]


def test_other_failures_of_unregistering_are_not_tried_again(
    persistence: Persistence, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = Coordinator(persistence.db, str(uuid.uuid4()))
    world.register_world(executor=True, queues=("default",), meta={})
    attempts: list[int] = []

    @contextmanager
    def failing(**options: Any) -> Iterator[sa.Connection]:
        attempts.append(1)
        raise _failure(pymysql.err.OperationalError(2013, "Lost connection"))
        yield  # pragma: no cover

    monkeypatch.setattr(persistence.db, "write", failing)
    with pytest.raises(PersistenceError):
        world.unregister_world()
    assert attempts == [1]
