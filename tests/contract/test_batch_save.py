"""Sub-plans in batches: many new plans saved in one write, their execution locks
taken in one write, the planned ones still to start found, on every database."""

from __future__ import annotations

import pytest

from dynflow import LockTaken, NotFound, PlanResult, PlanState
from dynflow.coordinator import EXECUTION_LOCK, PLANNED_LOCK, Coordinator, LockRecord
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.persistence import Persistence
from tests.contract.test_persistence import Deploy, Greet, assert_same_plan


def child(caller: tuple[str, int] | None, action: type = Greet) -> ExecutionPlan:
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.caller = caller
    builder.build(action, ("x",) if action is Greet else (), {})
    return builder.plan(PlanState.PLANNED, PlanResult.PENDING)


def saved_children(persistence: Persistence) -> tuple[ExecutionPlan, list[ExecutionPlan]]:
    """A parent and three children of its action 1, saved together: (parent, children)."""
    parent = child(None)
    persistence.save_new_plan(parent)
    plans = [child((parent.id, 1)), child((parent.id, 1), Deploy), child((parent.id, 1))]
    persistence.save_new_plans(plans)
    return parent, plans


def test_many_plans_are_saved_together_and_read_back_unchanged(
    persistence: Persistence, reader: Persistence
) -> None:
    parent, plans = saved_children(persistence)

    for plan in plans:
        assert_same_plan(reader.load_execution_plan(plan.id), plan)
    counts = reader.count_sub_plans(parent.id, 1)
    assert counts == {(PlanState.PLANNED, PlanResult.PENDING): 3}
    loaded = reader.load_execution_plans([plans[2].id, "no-such-plan", plans[0].id])
    assert [p.id for p in loaded] == [plans[2].id, plans[0].id]
    assert_same_plan(loaded[0], plans[2])


def test_a_held_lock_saves_none_of_the_plans(persistence: Persistence, reader: Persistence) -> None:
    Coordinator(persistence.db, "holder").acquire("singleton_action", "Only")
    plans = [child(None), child(None)]
    locks = [
        {"class": "singleton_action", "id": "Free", "owner_id": plans[0].id, "data": {}},
        {"class": "singleton_action", "id": "Only", "owner_id": plans[1].id, "data": {}},
    ]

    with pytest.raises(LockTaken) as raised:
        persistence.save_new_plans(plans, locks=locks)

    assert (raised.value.lock_id, raised.value.owner_id) == ("Only", "holder")
    for plan in plans:
        with pytest.raises(NotFound):
            reader.load_execution_plan(plan.id)
    assert Coordinator(reader.db, "x").find_locks(lock_class="singleton_action", id="Free") == []


def test_locks_are_taken_together_or_not_at_all(persistence: Persistence) -> None:
    me, other = Coordinator(persistence.db, "me"), Coordinator(persistence.db, "other")
    other.acquire(EXECUTION_LOCK, "b")

    with pytest.raises(LockTaken) as raised:
        me.acquire_many(EXECUTION_LOCK, ["a", "b", "c"])

    assert (raised.value.lock_id, raised.value.owner_id) == ("b", "other")
    assert [lock.id for lock in me.find_locks(lock_class=EXECUTION_LOCK)] == ["b"]
    me.acquire_many(EXECUTION_LOCK, ["a", "c"])
    held = {lock.id: lock.owner_id for lock in me.find_locks(lock_class=EXECUTION_LOCK)}
    assert held == {"a": "me", "b": "other", "c": "me"}


def test_planned_children_still_to_start_leave_out_those_being_started(
    persistence: Persistence,
) -> None:
    parent = child(None)
    persistence.save_new_plan(parent)
    plans = [child((parent.id, 1)) for _ in range(5)]
    plans[4].state = PlanState.RUNNING
    other_action, other_parent = child((parent.id, 2)), child((plans[0].id, 1))
    persistence.save_new_plans([*plans, other_action, other_parent])
    ordered = sorted(p.id for p in plans[:4])
    me = Coordinator(persistence.db, "me")
    # locked but not counted: running, of another action, of another parent
    me.acquire_many(EXECUTION_LOCK, [ordered[1], plans[4].id, other_action.id, other_parent.id])
    me.acquire(PLANNED_LOCK, ordered[0])  # a lock of another class: not being started
    others = {ordered[0], ordered[2], ordered[3]}

    found = persistence.sub_plan_round(parent.id, 1, None)
    counts = {
        (PlanState.PLANNED, PlanResult.PENDING): 4,
        (PlanState.RUNNING, PlanResult.PENDING): 1,
    }
    assert (found.counts, found.starting, sorted(found.to_start)) == (counts, 1, sorted(others))
    # the limit less one running and one being started
    found = persistence.sub_plan_round(parent.id, 1, 4)
    assert (found.counts, found.starting) == (counts, 1)
    assert len(set(found.to_start)) == 2
    assert set(found.to_start) < others
    assert sorted(persistence.sub_plan_round(parent.id, 1, 5).to_start) == sorted(others)
    assert persistence.sub_plan_round(parent.id, 1, 2) == (counts, 1, [])
    assert persistence.sub_plan_round(parent.id, 1, 1) == (counts, 1, [])  # over the limit
    assert persistence.sub_plan_round(parent.id, 3, None) == ({}, 0, [])
    planned_one = {(PlanState.PLANNED, PlanResult.PENDING): 1}
    assert persistence.sub_plan_round(parent.id, 2, None) == (planned_one, 1, [])
    me.acquire(EXECUTION_LOCK, ordered[2])
    found = persistence.sub_plan_round(parent.id, 1, 10)
    assert (found.starting, sorted(found.to_start)) == (2, [ordered[0], ordered[3]])
    assert persistence.sub_plan_round(parent.id, 1, 3) == (counts, 2, [])


def test_locks_are_taken_and_plans_read_together(
    persistence: Persistence, reader: Persistence
) -> None:
    parent, plans = saved_children(persistence)
    me, other = Coordinator(persistence.db, "me"), Coordinator(persistence.db, "other")
    other.acquire(EXECUTION_LOCK, plans[1].id)

    with pytest.raises(LockTaken) as raised:
        persistence.lock_and_load_execution_plans("me", [plans[0].id, plans[1].id])

    assert (raised.value.lock_id, raised.value.owner_id) == (plans[1].id, "other")
    assert me.find_locks(lock_class=EXECUTION_LOCK, owner_id="me") == []  # none taken
    assert persistence.lock_and_load_execution_plans("me", []) == []

    ids = [plans[2].id, "no-such-plan", plans[0].id]
    loaded = persistence.lock_and_load_execution_plans("me", ids)

    assert [p.id for p in loaded] == [plans[2].id, plans[0].id]
    assert_same_plan(loaded[0], plans[2])
    assert_same_plan(loaded[1], plans[0])
    held = {lock.id: lock.owner_id for lock in reader_locks(reader)}
    assert held == {plans[0].id: "me", plans[1].id: "other", plans[2].id: "me", ids[1]: "me"}
    assert reader.sub_plan_round(parent.id, 1, None).starting == 3


def reader_locks(reader: Persistence) -> list[LockRecord]:
    return Coordinator(reader.db, "reader").find_locks(lock_class=EXECUTION_LOCK)
