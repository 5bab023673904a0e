"""The delayed-plan store, on SQLite, PostgreSQL and MariaDB: rows round-trip, due plans are
found by time, a claim is exclusive, and processing replaces the scheduled rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dynflow import Action, DynflowError, LockTaken, NotFound, PlanResult, PlanState, StepState
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.persistence import Persistence
from dynflow.persistence.delayed import Claim, DelayedPlan, DelayedPlanStore

WORLD = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
#: a time with microseconds, as the database must keep it
T0 = datetime(2031, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)


class Provision(Action):
    label = "Provision hosts"

    def plan(self, hosts: list[str], *, size: int = 1) -> None:
        if "boom" in hosts:
            raise RuntimeError("no such host: boom")
        for host in hosts:
            self.plan_action(Host, name=host, size=size)


class Host(Action):
    def run(self, event: Any = None) -> None:
        self.output["up"] = True


@pytest.fixture
def store(persistence: Persistence) -> DelayedPlanStore:
    return persistence.delayed


def schedule(
    store: DelayedPlanStore,
    start_at: datetime = T0,
    start_before: datetime | None = None,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> str:
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.schedule(Provision)
    store.save_scheduled(
        builder.plan(PlanState.SCHEDULED, PlanResult.PENDING),
        {
            "execution_plan_id": builder.id,
            "start_at": start_at,
            "start_before": start_before,
            "args": {
                "action_class": Provision.class_name(),
                "args": args if args is not None else [["a", "b"]],
                "kwargs": kwargs if kwargs is not None else {"size": 2},
            },
        },
    )
    return builder.id


def lock(plan_id: str, owner: str = WORLD) -> dict[str, Any]:
    return {"class": EXECUTION_LOCK, "id": plan_id, "owner_id": owner, "data": {}}


def held(persistence: Persistence) -> list[tuple[str, str | None]]:
    coordinator = Coordinator(persistence.db, WORLD)
    return [(r.id, r.owner_id) for r in coordinator.find_locks(lock_class=EXECUTION_LOCK)]


def test_a_scheduled_plan_round_trips(persistence: Persistence, store: DelayedPlanStore) -> None:
    in_tokyo = timezone(timedelta(hours=9))
    plan_id = schedule(
        store,
        start_at=T0.astimezone(in_tokyo),
        start_before=T0 + timedelta(hours=1, microseconds=1),
        args=[["ünïcödé ✓", 1.5, None, True]],
        kwargs={"size": 2, "meta": {"nested": [1, {"deep": "x"}]}},
    )

    expected = DelayedPlan(
        execution_plan_id=plan_id,
        label="Provision hosts",
        start_at=T0,
        start_before=T0 + timedelta(hours=1, microseconds=1),
        action_class=Provision.class_name(),
        args=[["ünïcödé ✓", 1.5, None, True]],
        kwargs={"size": 2, "meta": {"nested": [1, {"deep": "x"}]}},
    )
    assert store.load(plan_id) == expected
    assert store.find() == [expected]
    assert store.load(plan_id).start_at.tzinfo is UTC
    assert store.count() == 1

    plan = persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.result, plan.label) == (
        PlanState.SCHEDULED,
        PlanResult.PENDING,
        "Provision hosts",
    )
    assert plan.started_at is None
    assert plan.entry_action.action_class == Provision.class_name()
    assert [(s.id, s.phase, s.state, s.started_at) for s in plan.steps.values()] == [
        (1, "plan", StepState.PENDING, None)
    ]
    assert persistence.find_execution_plans({"state": "scheduled"})[0].id == plan_id


def test_start_before_may_be_absent(store: DelayedPlanStore) -> None:
    plan_id = schedule(store, start_before=None)
    assert store.load(plan_id).start_before is None


def test_unknown_plans_are_not_found(store: DelayedPlanStore) -> None:
    with pytest.raises(NotFound, match="not a delayed plan"):
        store.load(str(uuid.uuid4()))


def test_due_plans_are_found_by_time_soonest_first(store: DelayedPlanStore) -> None:
    later = schedule(store, start_at=T0 + timedelta(seconds=10))
    exact = schedule(store, start_at=T0)
    earlier = schedule(store, start_at=T0 - timedelta(days=1))

    def due(now: datetime, limit: int = 10) -> list[str]:
        return [d.execution_plan_id for d in store.find_due(now, limit)]

    assert due(T0 - timedelta(days=2)) == []
    assert due(T0 - timedelta(microseconds=1)) == [earlier]
    assert due(T0) == [earlier, exact]  # start_at == now is due
    assert due(T0 + timedelta(hours=1)) == [earlier, exact, later]
    assert due(T0 + timedelta(hours=1), limit=2) == [earlier, exact]
    assert [d.execution_plan_id for d in store.find()] == [earlier, exact, later]
    assert [d.execution_plan_id for d in store.find(page=1, per_page=2)] == [later]


def test_a_claim_is_exclusive(persistence: Persistence, store: DelayedPlanStore) -> None:
    plan_id = schedule(store)

    assert store.claim(plan_id, lock(plan_id, OTHER), planning=True) is Claim.CLAIMED
    assert persistence.load_execution_plan(plan_id).state is PlanState.PLANNING
    assert store.claim(plan_id, lock(plan_id), planning=True) is Claim.LOCKED
    assert store.claim(plan_id, lock(plan_id, OTHER), planning=True) is Claim.LOCKED
    assert held(persistence) == [(plan_id, OTHER)]


def test_a_plan_left_planning_by_a_dead_world_can_be_claimed_again(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    assert store.claim(plan_id, lock(plan_id, OTHER), planning=True) is Claim.CLAIMED
    Coordinator(persistence.db, WORLD).unregister_world(OTHER)  # its locks are released

    assert store.claim(plan_id, lock(plan_id), planning=True) is Claim.CLAIMED
    assert held(persistence) == [(plan_id, WORLD)]


def test_a_claim_without_planning_leaves_the_state(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)

    assert store.claim(plan_id, lock(plan_id), planning=False) is Claim.CLAIMED

    assert persistence.load_execution_plan(plan_id).state is PlanState.SCHEDULED


def test_plans_that_moved_on_cannot_be_claimed(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    store.claim(plan_id, lock(plan_id), planning=False)
    store.stop(
        plan_id,
        result=PlanResult.CANCELLED,
        step_state=StepState.CANCELLED,
        error=None,
        ended_at=T0,
        release={"class": EXECUTION_LOCK, "id": plan_id, "owner_id": WORLD},
    )

    assert store.claim(plan_id, lock(plan_id), planning=True) is Claim.GONE
    missing = str(uuid.uuid4())
    assert store.claim(missing, lock(missing), planning=True) is Claim.GONE
    assert held(persistence) == []  # a refused claim takes no lock


def test_stop_ends_a_plan_that_was_never_planned(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    kept = schedule(store)
    store.claim(plan_id, lock(plan_id), planning=False)
    error = {"exception_class": "dynflow.errors.ExecutionError", "message": "too late"}

    store.stop(
        plan_id,
        result=PlanResult.ERROR,
        step_state=StepState.ERROR,
        error=error,
        ended_at=T0,
        release={"class": EXECUTION_LOCK, "id": plan_id, "owner_id": WORLD},
    )

    plan = persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.result, plan.ended_at) == (PlanState.STOPPED, PlanResult.ERROR, T0)
    assert plan.steps[1].state is StepState.ERROR
    assert plan.steps[1].ended_at == T0
    assert [(e.exception_class, e.message) for e in plan.errors] == [
        ("dynflow.errors.ExecutionError", "too late")
    ]
    assert [d.execution_plan_id for d in store.find()] == [kept]
    assert held(persistence) == []


def test_a_planned_plan_replaces_its_scheduled_rows(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    store.claim(plan_id, lock(plan_id), planning=True)
    builder = PlanBuilder(None, execution_plan_id=plan_id)  # type: ignore[arg-type]
    builder.build(Provision, [["a", "b"]], {"size": 2})
    planned = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    other = {"class": "singleton_action", "id": "x", "owner_id": plan_id, "data": {}}

    store.save_processed(planned, locks=[other])

    plan = persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.result) == (PlanState.PLANNED, PlanResult.PENDING)
    assert [(a.id, a.action_class.rsplit(".", 1)[1], a.input) for a in plan.actions] == [
        (1, "Provision", {}),
        (2, "Host", {"name": "a", "size": 2}),
        (3, "Host", {"name": "b", "size": 2}),
    ]
    assert plan.steps[1].state is StepState.SUCCESS
    assert plan.steps[1].started_at is not None
    assert [(s.phase, s.state) for s in plan.steps.values()][1:] == [
        ("plan", StepState.SUCCESS),
        ("run", StepState.PENDING),
        ("plan", StepState.SUCCESS),
        ("run", StepState.PENDING),
    ]
    assert plan.run_flow is not None
    assert store.find() == []
    assert held(persistence) == [(plan_id, WORLD)]  # the executor releases it when done
    singleton = Coordinator(persistence.db, WORLD).find_locks(lock_class="singleton_action")
    assert [(r.id, r.owner_id) for r in singleton] == [("x", plan_id)]


def test_a_held_lock_makes_save_processed_raise_lock_taken_and_write_nothing(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    store.claim(plan_id, lock(plan_id), planning=True)
    Coordinator(persistence.db, "holder").acquire("singleton_action", "x")
    builder = PlanBuilder(None, execution_plan_id=plan_id)  # type: ignore[arg-type]
    builder.build(Provision, [["a", "b"]], {"size": 2})
    planned = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    other = {"class": "singleton_action", "id": "x", "owner_id": plan_id, "data": {}}

    with pytest.raises(LockTaken) as raised:
        store.save_processed(planned, locks=[other])

    assert (raised.value.lock_id, raised.value.owner_id) == ("x", "holder")
    plan = persistence.load_execution_plan(plan_id)
    assert plan.state is PlanState.PLANNING
    assert [a.id for a in plan.actions] == [1]
    assert [d.execution_plan_id for d in store.find()] == [plan_id]


def test_a_failed_planning_replaces_its_scheduled_rows_and_releases_the_lock(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)
    store.claim(plan_id, lock(plan_id), planning=True)
    builder = PlanBuilder(None, execution_plan_id=plan_id)  # type: ignore[arg-type]
    with pytest.raises(DynflowError) as failure:
        builder.build(Provision, [["a", "boom"]], {})
    message = builder.record_failure(failure.value)

    store.save_processed(
        builder.plan(PlanState.STOPPED, PlanResult.ERROR),
        release={"class": EXECUTION_LOCK, "id": plan_id, "owner_id": WORLD},
    )

    assert message == "Provision: no such host: boom"
    plan = persistence.load_execution_plan(plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert [(e.exception_class, e.message) for e in plan.errors] == [
        ("RuntimeError", "no such host: boom")
    ]
    assert [a.id for a in plan.actions] == [1]
    assert store.find() == []
    assert held(persistence) == []


def test_delete_forgets_only_the_delayed_row(
    persistence: Persistence, store: DelayedPlanStore
) -> None:
    plan_id = schedule(store)

    store.delete(plan_id)

    assert store.find() == []
    assert persistence.load_execution_plan(plan_id).state is PlanState.SCHEDULED
