"""The database connector and the dispatchers on every database: envelopes only for
registered worlds, batches in order, and execution requests that find an executor
even when the one first picked has gone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import (
    Action,
    ExecutionPlan,
    NotFound,
    PlanningFailed,
    PlanResult,
    PlanState,
    Singleton,
    World,
)
from dynflow.cluster.connector.database import DatabaseConnector
from dynflow.cluster.connector.messages import Envelope, Execution, Ping, Status, decode
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.persistence.tables import envelopes
from tests.contract.test_persistence import assert_same_plan
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 20.0


class WhereAmI(Action):
    def run(self, event: Any = None) -> None:
        self.output["world_id"] = self.world.id


def _envelopes_for(world: World, receiver_id: str) -> list[Envelope]:
    query = sa.select(envelopes.c.data).where(envelopes.c.receiver_id == receiver_id)
    with world.persistence.db.read() as connection:
        return [decode(d) for d in connection.execute(query.order_by(envelopes.c.id)).scalars()]


def _silent_world(world: World, executor: bool = True) -> Coordinator:
    """A registered world that never reads its envelopes."""
    silent = Coordinator(world.persistence.db, str(uuid.uuid4()))
    silent.register_world(executor=executor, queues=("default",), meta={})
    return silent


def _client(db_url: str, make_world: MakeWorld, **options: Any) -> World:
    return make_world(db_url, executor=False, connector="database", **options)


def test_an_envelope_to_a_world_not_registered_is_refused_and_not_written(
    db_url: str, make_world: MakeWorld
) -> None:
    client = _client(db_url, make_world)
    assert isinstance(client.connector, DatabaseConnector)
    ghost = str(uuid.uuid4())

    with pytest.raises(NotFound, match=f"world {ghost} is not registered"):
        client.connector.send(Envelope(client.id, ghost, "r1", Ping()))

    assert _envelopes_for(client, ghost) == []
    with pytest.raises(NotFound, match=ghost):  # a request fails at once, too
        client.ping(ghost).result(TIMEOUT)


def test_a_batch_is_written_in_order_for_registered_worlds_only(
    db_url: str, make_world: MakeWorld
) -> None:
    client = _client(db_url, make_world)
    silent, ghost = _silent_world(client), str(uuid.uuid4())
    batch = [
        Envelope(client.id, silent.world_id, "a", Ping()),
        Envelope(client.id, ghost, "b", Ping()),
        Envelope(client.id, silent.world_id, "c", Status("plan")),
        Envelope(client.id, silent.world_id, "d", Ping()),
    ]

    assert client.connector.send_many(batch) == {ghost}

    assert _envelopes_for(client, silent.world_id) == [batch[0], batch[2], batch[3]]
    assert _envelopes_for(client, ghost) == []
    assert client.connector.send_many([]) == set()


def test_an_executor_gone_since_the_client_looked_is_skipped_at_once(
    db_url: str, make_world: MakeWorld
) -> None:
    client = _client(db_url, make_world)
    first = make_world(db_url, connector="database")
    second = make_world(db_url, connector="database")
    warm = [client.trigger(WhereAmI) for _ in range(2)]  # the client knows both now
    ran = {t.finished.result(TIMEOUT).entry_action.output["world_id"] for t in warm}
    assert ran == {first.id, second.id}

    first.terminate()
    plans = [client.trigger(WhereAmI).finished.result(TIMEOUT) for _ in range(4)]

    assert all(p.result is PlanResult.SUCCESS for p in plans)
    assert {p.entry_action.output["world_id"] for p in plans} == {second.id}


def test_an_execution_whose_executor_leaves_before_taking_it_goes_to_another(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "dynflow.cluster.remote.CHECK_INTERVAL", 0.05
    )  # pending requests: checked often
    client = _client(db_url, make_world)
    silent = _silent_world(client)  # the only executor when the plan is triggered

    triggered = client.trigger(WhereAmI)
    (sent,) = eventually(lambda: _envelopes_for(client, silent.world_id))
    assert sent.message.execution_plan_id == triggered.execution_plan_id
    executor = make_world(db_url, connector="database")
    locks = client.coordinator.find_locks(lock_class=EXECUTION_LOCK)
    assert [lock.owner_id for lock in locks] == [client.id]  # nobody took the plan: not lost
    silent.unregister_world()

    plan = triggered.finished.result(TIMEOUT)

    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output["world_id"] == executor.id


class Fails(Action):
    def plan(self, size: int = 0) -> None:
        with self.sequence():
            self.plan_action(WhereAmI)
            self.plan_self(size=size)

    def run(self, event: Any = None) -> None:
        self.output["blob"] = "x" * self.input["size"]
        raise ValueError("failed on purpose")


@pytest.mark.parametrize(("size", "limit"), [(0, None), (100_000, None), (0, 10)])
def test_the_finished_plans_row_comes_in_the_answer_its_details_are_read_when_asked(
    db_url: str,
    make_world: MakeWorld,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    limit: int | None,
) -> None:
    """The answer carries the plan's row (state, result, times), whatever its outputs
    weigh; its steps, actions and history are read on first access. A plan whose row
    is over the answer limit is read whole instead."""
    if limit is not None:
        monkeypatch.setattr("dynflow.cluster.answers.PLAN_ANSWER_LIMIT", limit)
    client = _client(db_url, make_world)
    executor = make_world(db_url, connector="database")
    reads: list[str] = []
    loads: list[str] = []
    find, load = client.persistence.find_execution_plan, client.persistence.load_execution_plan

    def spy_find(plan_id: str) -> ExecutionPlan:
        reads.append(plan_id)
        return find(plan_id)

    def spy_load(plan_id: str) -> ExecutionPlan:
        loads.append(plan_id)
        return load(plan_id)

    monkeypatch.setattr(client.persistence, "find_execution_plan", spy_find)
    monkeypatch.setattr(client.persistence, "load_execution_plan", spy_load)

    plan = client.trigger(Fails, size=size).finished.result(TIMEOUT)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    if limit is not None:  # a big row: the plan is read whole
        assert reads == [plan.id]
    else:
        assert (reads, loads) == ([], [])  # nothing read for the state and result
    assert plan.errors[0].message == "failed on purpose"
    assert plan.execution_history[-1].world_id == executor.id
    if limit is None:
        assert loads == [plan.id]  # the details, read once
    # exactly what the database holds, timings, errors and outputs included
    assert_same_plan(plan, load(plan.id))


class OnlyOne(Singleton, Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


def test_a_refused_plan_sends_nothing_and_leaves_no_request_behind(
    db_url: str, make_world: MakeWorld
) -> None:
    client = _client(db_url, make_world)
    executor = make_world(db_url, connector="database")
    first = client.trigger(OnlyOne)
    eventually(
        lambda: (
            client.persistence.load_execution_plan(first.execution_plan_id).state
            is PlanState.RUNNING
        )
    )

    with pytest.raises(PlanningFailed, match="singleton action"):
        client.trigger(OnlyOne)

    (pending,) = client.cluster.client._pending.values()  # only the first plan's request
    assert pending.request == Execution(first.execution_plan_id)
    assert _envelopes_for(client, executor.id) == []
