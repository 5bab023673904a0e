"""Answers written with a plan's rows (``Changes.answers``), on every database: only
with the rows of a plan the writer still holds, only to a registered receiver, and
(on PostgreSQL) with a wake-up of the receiver's listener."""

from __future__ import annotations

import uuid

from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.execution_plan.states import PlanState
from dynflow.persistence import Persistence
from dynflow.persistence.changes import Changes
from tests.contract.test_envelope_store import assert_wakes
from tests.contract.test_persistence import T0, plan_values, store_plan


def _world(persistence: Persistence, executor: bool = False) -> Coordinator:
    coordinator = Coordinator(persistence.db, str(uuid.uuid4()))
    coordinator.register_world(executor=executor, queues=("default",), meta={})
    return coordinator


def _stopped(plan_id: str, receiver_id: str, text: str) -> Changes:
    changes = Changes()
    changes.plans[plan_id] = plan_values("stopped", "success", started_at=T0, ended_at=T0)
    changes.answers[plan_id] = (receiver_id, text)
    return changes


def test_an_answer_is_written_with_the_plan_it_belongs_to(
    persistence: Persistence, reader: Persistence
) -> None:
    executor, client = _world(persistence, executor=True), _world(persistence)
    held, lost = store_plan(persistence), store_plan(persistence)
    executor.acquire(EXECUTION_LOCK, held)
    Coordinator(persistence.db, "someone else").acquire(EXECUTION_LOCK, lost)
    changes = _stopped(held, client.world_id, "done: held")
    changes.absorb(_stopped(lost, client.world_id, "done: lost"))

    fenced = persistence.apply_fenced(changes, executor.world_id, executor.registration())

    assert fenced == {lost}
    assert reader.load_execution_plan(held).state is PlanState.STOPPED
    assert reader.load_execution_plan(lost).state is PlanState.PLANNED
    assert [data for _, data in reader.envelopes.claim(client.world_id, 10)] == ["done: held"]


def test_an_answer_to_a_world_that_is_gone_is_dropped_and_the_rows_written(
    persistence: Persistence, reader: Persistence
) -> None:
    executor = _world(persistence, executor=True)
    plan_id = store_plan(persistence)
    executor.acquire(EXECUTION_LOCK, plan_id)
    gone = str(uuid.uuid4())  # never registered

    changes = _stopped(plan_id, gone, "done")
    assert persistence.apply_fenced(changes, executor.world_id, executor.registration()) == set()

    assert reader.load_execution_plan(plan_id).state is PlanState.STOPPED
    assert gone not in reader.envelopes.pending()


def test_nothing_is_answered_under_an_old_registration(
    persistence: Persistence, reader: Persistence
) -> None:
    executor, client = _world(persistence, executor=True), _world(persistence)
    plan_id = store_plan(persistence)
    executor.acquire(EXECUTION_LOCK, plan_id)
    old_token = executor.registration()
    executor.register_world(executor=True, queues=("default",), meta={})  # registered again

    changes = _stopped(plan_id, client.world_id, "done")
    assert persistence.apply_fenced(changes, executor.world_id, old_token) == {plan_id}

    assert reader.envelopes.claim(client.world_id, 10) == []


def test_an_answer_wakes_its_receiver(persistence: Persistence) -> None:
    executor, client = _world(persistence, executor=True), _world(persistence)
    plan_id = store_plan(persistence)
    executor.acquire(EXECUTION_LOCK, plan_id)
    listener = persistence.envelopes.listen(client.world_id)
    if listener is None:  # this database's receivers poll
        return
    try:
        changes = _stopped(plan_id, client.world_id, "done")
        token = executor.registration()
        assert_wakes(listener, lambda: persistence.apply_fenced(changes, executor.world_id, token))
    finally:
        listener.close()
    assert [data for _, data in persistence.envelopes.claim(client.world_id, 10)] == ["done"]
