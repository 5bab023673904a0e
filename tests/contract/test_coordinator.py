"""The coordinator contract: the world registry and locks, on every database."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import DynflowError, LockTaken
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.persistence import open_persistence
from dynflow.persistence.sql.database import Database
from dynflow.persistence.tables import coordinator_records

HOST = socket.gethostname()
NO_SUCH_PID = 2**31 - 1  # above any pid_max: no process can have it


@pytest.fixture
def db(any_db_url: str) -> Iterator[Database]:
    persistence = open_persistence(any_db_url)
    persistence.migrate()
    yield persistence.db
    persistence.close()


@pytest.fixture
def coordinator_for(db: Database) -> Callable[[str], Coordinator]:
    """A coordinator per world id, all on the same database."""
    return lambda world_id: Coordinator(db, world_id)


def register(coordinator: Coordinator, *, executor: bool = True, **meta: Any) -> Coordinator:
    coordinator.register_world(
        executor=executor,
        queues=["default", "slow"] if executor else [],
        meta={"hostname": HOST, "pid": os.getpid(), **meta},
    )
    return coordinator


def set_world_data(db: Database, world_id: str, **values: Any) -> None:
    """Rewrite fields of a world's stored record, as if written long ago or elsewhere."""
    table = coordinator_records
    key = (table.c["class"] == "world", table.c.id == world_id)
    with db.write() as connection:
        data = connection.execute(sa.select(table.c.data).where(*key)).scalar_one()
        for name, value in values.items():
            if name in ("hostname", "pid"):
                data["meta"][name] = value
            else:
                data[name] = value
        connection.execute(sa.update(table).where(*key).values(data=data))


# -- the world registry -------------------------------------------------------------


def test_registered_worlds_are_found_with_their_record(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    before = coordinator_for("observer").database_now()  # leases go by the database's clock
    register(coordinator_for("executor-1"), role="worker ✓")
    register(coordinator_for("client-1"), executor=False)

    worlds = {w.id: w for w in coordinator_for("observer").find_worlds()}

    assert set(worlds) == {"executor-1", "client-1"}
    executor = worlds["executor-1"]
    assert executor.executor is True
    assert executor.queues == ("default", "slow")
    assert executor.meta == {"hostname": HOST, "pid": os.getpid(), "role": "worker ✓"}
    assert executor.heartbeat_at is not None
    assert executor.heartbeat_at.tzinfo is not None
    assert before <= executor.heartbeat_at <= coordinator_for("observer").database_now()
    client = worlds["client-1"]
    assert (client.executor, client.queues) == (False, ())


def test_find_worlds_can_return_only_executors(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    register(coordinator_for("executor-1"))
    register(coordinator_for("executor-2"))
    register(coordinator_for("client-1"), executor=False)
    observer = coordinator_for("observer")

    assert [w.id for w in observer.find_worlds(active_executors_only=True)] == [
        "executor-1",
        "executor-2",
    ]
    assert [w.id for w in observer.find_worlds(active_executors_only=False)] == [
        "client-1",
        "executor-1",
        "executor-2",
    ]


def test_registering_again_replaces_the_record(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    world = register(coordinator_for("w1"), generation=1)
    register(world, executor=False, generation=2)

    [record] = world.find_worlds()
    assert (record.id, record.executor, record.meta["generation"]) == ("w1", False, 2)


def test_heartbeat_renews_the_record(
    db: Database, coordinator_for: Callable[[str], Coordinator]
) -> None:
    world = register(coordinator_for("w1"))
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    set_world_data(db, "w1", heartbeat_at=long_ago.isoformat())
    assert world.find_worlds()[0].heartbeat_at == long_ago

    before = world.database_now()  # leases go by the database's clock
    world.heartbeat()

    [record] = world.find_worlds()
    assert record.heartbeat_at is not None
    assert record.heartbeat_at >= before
    assert abs(record.heartbeat_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert record.meta["hostname"] == HOST  # the rest of the record is kept
    assert record.queues == ("default", "slow")


def test_heartbeat_of_an_unregistered_world_does_not_register_it(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    world = coordinator_for("ghost")
    world.heartbeat()
    assert world.find_worlds() == []


def test_registering_again_is_a_new_registration(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    """Another registration under the same id (the world itself after it was declared
    dead, or a second process given its id): the old registration's heartbeat fails."""
    first = register(coordinator_for("w1"))
    second = register(coordinator_for("w1"))
    assert first.token is not None
    assert second.token is not None
    assert first.token != second.token
    assert first.heartbeat() is False
    assert second.heartbeat() is True
    register(first)
    assert first.heartbeat() is True
    assert second.heartbeat() is False


def test_unregister_removes_the_world_and_its_locks_only(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    leaving = register(coordinator_for("leaving"))
    staying = register(coordinator_for("staying"))
    leaving.acquire(EXECUTION_LOCK, "plan-1")
    leaving.acquire("planning_lock", "plan-2")
    staying.acquire(EXECUTION_LOCK, "plan-3")

    leaving.unregister_world()

    assert [w.id for w in staying.find_worlds()] == ["staying"]
    assert [(lock.id, lock.owner_id) for lock in staying.find_locks()] == [("plan-3", "staying")]


def test_unregister_another_world(coordinator_for: Callable[[str], Coordinator]) -> None:
    register(coordinator_for("dead")).acquire(EXECUTION_LOCK, "plan-1")
    survivor = register(coordinator_for("survivor"))

    survivor.unregister_world("dead")

    assert [w.id for w in survivor.find_worlds()] == ["survivor"]
    assert survivor.find_locks() == []


# -- stale worlds ---------------------------------------------------------------------


def test_find_stale_worlds(db: Database, coordinator_for: Callable[[str], Coordinator]) -> None:
    observer = register(coordinator_for("observer"))
    register(coordinator_for("fresh"))
    register(coordinator_for("silent"))
    set_world_data(
        db, "silent", heartbeat_at=(datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    )
    register(coordinator_for("crashed"), pid=NO_SUCH_PID)  # this host, process gone
    register(coordinator_for("remote"), hostname=f"not-{HOST}", pid=NO_SUCH_PID)
    register(coordinator_for("no-pid"), pid="unknown")

    assert [w.id for w in observer.find_stale_worlds(lease=60)] == ["crashed", "silent"]
    # the heartbeat alone decides for worlds on other hosts
    set_world_data(
        db, "remote", heartbeat_at=(datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    )
    assert [w.id for w in observer.find_stale_worlds(lease=60)] == [
        "crashed",
        "remote",
        "silent",
    ]
    assert [w.id for w in observer.find_stale_worlds(lease=3600)] == ["crashed"]


def test_a_world_is_judged_by_its_own_lease(
    db: Database, coordinator_for: Callable[[str], Coordinator]
) -> None:
    """Not by the checker's: a client with a 5 s heartbeat and a 15 s lease is alive
    10 s after its last heartbeat, even for an executor with a 4 s lease."""
    observer = register(coordinator_for("observer"))
    coordinator_for("client").register_world(
        executor=False, queues=(), meta={}, heartbeat_interval=5.0, lease=15.0
    )
    register(coordinator_for("old-record"))  # written without a lease of its own
    ten_seconds_ago = (datetime.now(UTC) - timedelta(seconds=10)).isoformat()
    set_world_data(db, "client", heartbeat_at=ten_seconds_ago)
    set_world_data(db, "old-record", heartbeat_at=ten_seconds_ago)

    assert [w.id for w in observer.find_stale_worlds(lease=4)] == ["old-record"]
    [client] = [w for w in observer.find_worlds() if w.id == "client"]
    assert (client.heartbeat_interval, client.lease) == (5.0, 15.0)

    set_world_data(
        db, "client", heartbeat_at=(datetime.now(UTC) - timedelta(seconds=16)).isoformat()
    )
    assert [w.id for w in observer.find_stale_worlds(lease=4)] == ["client", "old-record"]


def test_a_world_never_finds_itself_stale(
    db: Database, coordinator_for: Callable[[str], Coordinator]
) -> None:
    me = register(coordinator_for("me"), pid=NO_SUCH_PID)
    set_world_data(db, "me", heartbeat_at=(datetime.now(UTC) - timedelta(days=1)).isoformat())

    assert me.find_stale_worlds(lease=1) == []
    assert [w.id for w in coordinator_for("other").find_stale_worlds(lease=1)] == ["me"]


# -- locks --------------------------------------------------------------------------------


def test_acquire_and_release(coordinator_for: Callable[[str], Coordinator]) -> None:
    first, second = coordinator_for("first"), coordinator_for("second")

    first.acquire(EXECUTION_LOCK, "plan-1", {"note": "mine ✓"})

    [lock] = second.find_locks()
    assert (lock.lock_class, lock.id, lock.owner_id, dict(lock.data)) == (
        EXECUTION_LOCK,
        "plan-1",
        "first",
        {"note": "mine ✓"},
    )
    first.release(EXECUTION_LOCK, "plan-1")
    assert second.find_locks() == []
    second.acquire(EXECUTION_LOCK, "plan-1")
    assert [lock.owner_id for lock in first.find_locks()] == ["second"]


def test_a_taken_lock_names_its_holder(coordinator_for: Callable[[str], Coordinator]) -> None:
    holder, other = coordinator_for("holder-world"), coordinator_for("other-world")
    holder.acquire(EXECUTION_LOCK, "plan-1")

    with pytest.raises(LockTaken) as raised:
        other.acquire(EXECUTION_LOCK, "plan-1")

    error = raised.value
    assert isinstance(error, DynflowError)
    assert (error.lock_class, error.lock_id, error.owner_id) == (
        EXECUTION_LOCK,
        "plan-1",
        "holder-world",
    )
    assert "holder-world" in str(error)
    assert "plan-1" in str(error)
    # not re-entrant either: the holder cannot take it twice
    with pytest.raises(LockTaken):
        holder.acquire(EXECUTION_LOCK, "plan-1")
    [lock] = other.find_locks()
    assert lock.owner_id == "holder-world"


def test_the_same_id_in_another_lock_class_is_another_lock(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    first, second = coordinator_for("first"), coordinator_for("second")
    first.acquire(EXECUTION_LOCK, "plan-1")
    second.acquire("planning_lock", "plan-1")

    assert {(lock.lock_class, lock.owner_id) for lock in first.find_locks(id="plan-1")} == {
        (EXECUTION_LOCK, "first"),
        ("planning_lock", "second"),
    }


def test_release_only_frees_a_lock_one_holds(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    holder, intruder = coordinator_for("holder"), coordinator_for("intruder")
    holder.acquire(EXECUTION_LOCK, "plan-1")

    intruder.release(EXECUTION_LOCK, "plan-1")
    intruder.release(EXECUTION_LOCK, "never-taken")

    assert [(lock.id, lock.owner_id) for lock in holder.find_locks()] == [("plan-1", "holder")]


def test_find_locks_filters(coordinator_for: Callable[[str], Coordinator]) -> None:
    a, b = register(coordinator_for("a")), register(coordinator_for("b"))
    a.acquire(EXECUTION_LOCK, "plan-1")
    a.acquire(EXECUTION_LOCK, "plan-2")
    b.acquire(EXECUTION_LOCK, "plan-3")
    b.acquire("singleton_action", "Sync")

    def found(**filters: Any) -> list[tuple[str, str, str | None]]:
        return sorted((lock.lock_class, lock.id, lock.owner_id) for lock in a.find_locks(**filters))

    everything = found()
    assert everything == [
        (EXECUTION_LOCK, "plan-1", "a"),
        (EXECUTION_LOCK, "plan-2", "a"),
        (EXECUTION_LOCK, "plan-3", "b"),
        ("singleton_action", "Sync", "b"),
    ]  # world records are not locks
    assert found(lock_class=EXECUTION_LOCK) == everything[:3]
    assert found(**{"class": "singleton_action"}) == everything[3:]
    assert found(owner_id="a") == everything[:2]
    assert found(owner_id="b", lock_class=EXECUTION_LOCK) == [everything[2]]
    assert found(id="plan-2") == [everything[1]]
    assert found(id="plan-2", owner_id="b") == []
    assert found(owner_id="nobody") == []


def test_only_one_of_many_racing_worlds_gets_a_lock(
    coordinator_for: Callable[[str], Coordinator],
) -> None:
    contenders = [coordinator_for(f"world-{i}") for i in range(8)]
    start = threading.Barrier(len(contenders))
    winners: list[str] = []
    losers: list[str | None] = []
    lock_id = str(uuid.uuid4())

    def contend(coordinator: Coordinator) -> None:
        start.wait()
        try:
            coordinator.acquire(EXECUTION_LOCK, lock_id)
            winners.append(coordinator.world_id)
        except LockTaken as exc:
            losers.append(exc.owner_id)

    threads = [threading.Thread(target=contend, args=(c,)) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(winners) == 1
    assert len(losers) == len(contenders) - 1
    assert set(losers) == {winners[0]}
    assert [lock.owner_id for lock in contenders[0].find_locks(id=lock_id)] == winners
