"""The envelope store, on every database (the database connector's storage)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from dynflow.coordinator import Coordinator
from dynflow.persistence import EnvelopeStore, Persistence, open_persistence
from dynflow.persistence.port import Listener
from dynflow.persistence.postgres.adapter import PostgresPersistence
from dynflow.persistence.postgres.envelopes import _CLAIM
from tests.conftest import make_url


@pytest.fixture
def store(persistence: Persistence) -> EnvelopeStore:
    return persistence.envelopes


def register(persistence: Persistence) -> str:
    world_id = str(uuid.uuid4())
    Coordinator(persistence.db, world_id).register_world(executor=False, queues=(), meta={})
    return world_id


def test_the_url_picks_the_adapter(any_db_url: str) -> None:
    persistence = open_persistence(any_db_url)
    try:
        postgresql = any_db_url.startswith("postgresql")
        assert isinstance(persistence, PostgresPersistence) is postgresql
        sqlite = any_db_url.startswith("sqlite")
        assert persistence.default_connector == ("direct" if sqlite else "database")
    finally:
        persistence.close()


def test_send_writes_only_for_registered_worlds(
    persistence: Persistence, store: EnvelopeStore
) -> None:
    world = register(persistence)
    assert store.send(world, "one")
    assert not store.send(str(uuid.uuid4()), "lost")
    assert store.send(world, "two")
    assert [data for _, data in store.claim(world, 10)] == ["one", "two"]


def test_send_many_keeps_the_order_and_names_unknown_receivers(
    persistence: Persistence, store: EnvelopeStore
) -> None:
    first, second = register(persistence), register(persistence)
    unknown = str(uuid.uuid4())
    batch = [(first, "a"), (unknown, "x"), (second, "b"), (first, "c")]

    assert store.send_many(batch) == {unknown}
    assert store.send_many([]) == set()
    assert [data for _, data in store.claim(first, 10)] == ["a", "c"]
    assert [data for _, data in store.claim(second, 10)] == ["b"]


@pytest.mark.parametrize("durable", [True, False])
def test_claim_takes_the_oldest_up_to_the_limit_and_deletes_them(
    persistence: Persistence, store: EnvelopeStore, reader: Persistence, durable: bool
) -> None:
    world = register(persistence)
    store.send_many([(world, str(n)) for n in range(5)])

    first = store.claim(world, 3, durable)
    assert [data for _, data in first] == ["0", "1", "2"]
    assert [row_id for row_id, _ in first] == sorted(row_id for row_id, _ in first)
    assert reader.envelopes.pending().get(world) == 2  # deleted, and committed
    assert [data for _, data in store.claim(world, 3, durable)] == ["3", "4"]
    assert store.claim(world, 3, durable) == []


def test_a_lazy_claim_leaves_its_connection_committing_durably(
    persistence: Persistence, store: EnvelopeStore
) -> None:
    """``synchronous_commit`` is off for the claim's own transaction only: the pooled
    connection it ran on commits everything else durably."""
    if not isinstance(persistence, PostgresPersistence):
        return  # nothing to set there: every claim is durable
    world = register(persistence)
    for n in range(3):
        store.send(world, str(n))
        assert [data for _, data in store.claim(world, 10, durable=False)] == [str(n)]
        [(setting,)] = persistence.db.run(sa.text("SHOW synchronous_commit"), {})
        assert setting == "on"


def test_drop_orphans_and_drop_for(persistence: Persistence, store: EnvelopeStore) -> None:
    kept, gone, dead = register(persistence), register(persistence), register(persistence)
    store.send_many([(kept, "k"), (gone, "g1"), (gone, "g2"), (dead, "d")])
    Coordinator(persistence.db, gone).unregister_world()

    assert store.drop_orphans() == 2
    assert store.drop_orphans() == 0
    assert store.drop_for(dead) == 1
    assert [data for _, data in store.claim(kept, 10)] == ["k"]
    assert store.claim(dead, 10) == []


def test_pending_counts_envelopes_by_receiver(
    persistence: Persistence, store: EnvelopeStore
) -> None:
    one, two, idle = register(persistence), register(persistence), register(persistence)
    before = store.pending()
    store.send_many([(one, "a"), (two, "b"), (one, "c")])

    pending = store.pending()
    assert pending.get(one) == 2
    assert pending.get(two) == 1
    assert idle not in pending
    assert {k: v for k, v in pending.items() if k not in (one, two)} == before
    store.claim(one, 1)
    assert store.pending().get(one) == 1


def test_a_listener_wakes_on_send_or_wake(persistence: Persistence, store: EnvelopeStore) -> None:
    world = register(persistence)
    listener = store.listen(world)
    if listener is None:  # the receiver polls: waking it is a no-op
        store.wake(world)
        assert not isinstance(persistence, PostgresPersistence)
        return
    try:
        for wake_up in (lambda: store.send(world, "hello"), lambda: store.wake(world)):
            assert_wakes(listener, wake_up)
    finally:
        listener.close()


def assert_wakes(listener: Listener, wake_up: Callable[[], object]) -> None:
    """``wake_up``, run a moment later on another thread, ends the listener's wait
    (which would otherwise last 20 s)."""
    timer = threading.Timer(0.2, wake_up)
    started = time.monotonic()
    timer.start()
    listener.wait(20.0)
    timer.join()
    assert time.monotonic() - started < 10.0


def test_a_claim_takes_no_more_than_its_limit_whatever_plan_postgresql_picks(
    tmp_path: Path,
) -> None:
    """With the claimed ids in a subquery joined by IN, a nested loop re-ran the
    subquery for each row and SKIP LOCKED passed over the rows already deleted: more
    than the limit was claimed. Here that plan is forced on the claim's statement."""
    persistence = open_persistence(make_url("postgresql", tmp_path))
    try:
        persistence.migrate()
        world = register(persistence)
        persistence.envelopes.send_many([(world, str(n)) for n in range(5)])
        forced = (
            "SET enable_hashjoin = off; SET enable_mergejoin = off; "
            "SET enable_material = off; SET enable_hashagg = off; SET enable_sort = off"
        )
        with persistence.db.write() as connection:
            for setting in forced.split("; "):
                connection.exec_driver_sql(setting.replace("SET", "SET LOCAL"))
            rows = connection.execute(_CLAIM, {"receiver_id": world, "limit": 3}).all()
        assert sorted(data for _, data in rows) == ["0", "1", "2"]
        assert [data for _, data in persistence.envelopes.claim(world, 10)] == ["3", "4"]
    finally:
        persistence.close()
