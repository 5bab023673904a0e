"""The persistence contract: what is written comes back unchanged, on every database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import (
    Action,
    ConfigurationError,
    DynflowError,
    ExecutionPlan,
    LockTaken,
    NotFound,
    PersistenceError,
    PlanResult,
    PlanState,
    StepError,
    StepState,
    World,
)
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.execution_plan.shape import shape_of
from dynflow.persistence import Persistence
from dynflow.persistence.changes import Changes
from dynflow.persistence.records import TakeOver
from dynflow.persistence.sql.adapter import SqlPersistence
from dynflow.persistence.tables import actions as actions_table
from dynflow.persistence.tables import envelopes, execution_plans
from dynflow.serialization import ref_marker

MakeWorld = Callable[..., World]
T0 = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)


class Greet(Action):
    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        if self.input["name"] == "fail":
            raise ValueError("naïve failure ✗ 失败")
        self.output["greeting"] = f"hello {self.input['name']}"


class Deploy(Action):
    """A sequence of children, an output reference, a run and a finalize phase."""

    def plan(self, fail: bool = False) -> None:
        with self.sequence():
            first = self.plan_action(Greet, "web")
            self.plan_action(Greet, "fail" if fail else "db")
            self.plan_self(greeting=first.output["greeting"])

    def run(self, event: Any = None) -> None:
        self.output["seen"] = self.input["greeting"]

    def finalize(self) -> None:
        self.output["finalized"] = True


class Blob(Action):
    """Input and output of any size or script, as given."""

    def plan(self, payload: Any) -> None:
        self.plan_self(payload=payload)

    def run(self, event: Any = None) -> None:
        self.output["payload"] = self.input["payload"]
        self.output["length"] = len(self.input["payload"])


class Unicode(Action):
    label = "Créer la VM ✓ 🚀 虚拟机"

    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        self.output["echo"] = self.input["name"]
        self.output[self.input["name"]] = "clé ✓"


def store_plan(
    persistence: Persistence, action_class: type[Action] = Greet, *args: Any, **plan: Any
) -> str:
    """Plan ``action_class`` without a world and store it, overriding plan columns."""
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.build(action_class, args or ("x",), {})
    new = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    kinds: dict[str, Callable[[Any], Any]] = {"state": PlanState, "result": PlanResult}
    for name, value in plan.items():
        setattr(new, name, kinds.get(name, lambda v: v)(value))
    persistence.save_new_plan(new)
    return builder.id


def assert_same_plan(loaded: ExecutionPlan, expected: ExecutionPlan) -> None:
    """Every stored attribute of the two plans is equal (floats and datetimes exactly)."""
    for field in fields(ExecutionPlan):
        if field.name != "_details":
            assert getattr(loaded, field.name) == getattr(expected, field.name), field.name
    assert loaded.steps == expected.steps
    assert loaded.actions == expected.actions
    assert loaded.execution_history == expected.execution_history


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


# -- round trips --------------------------------------------------------------------


def test_planned_plan_round_trips(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)
    planned = world.plan(Deploy)

    loaded = reader.load_execution_plan(planned.id)

    assert loaded.state is PlanState.PLANNED
    assert loaded.result is PlanResult.PENDING
    assert loaded.label == "Deploy"
    assert_same_plan(loaded, planned)
    assert [a.action_class for a in loaded.actions] == [
        Deploy.class_name(),
        Greet.class_name(),
        Greet.class_name(),
    ]
    # the output reference is stored as such, to be resolved when the step runs
    assert loaded.entry_action.input == {"greeting": ref_marker(2, ("greeting",))}
    assert [a.parent_action_id for a in loaded.actions] == [None, 1, 1]
    assert {s.phase for s in loaded.steps.values()} == {"plan", "run", "finalize"}
    for step in loaded.steps.values():
        if step.phase == "plan":
            assert step.state is StepState.SUCCESS
            assert_utc(step.started_at)
            assert_utc(step.ended_at)
        else:
            assert step.state is StepState.PENDING
            assert step.started_at is None


def test_executed_plan_round_trips_with_errors_and_history(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)
    finished = world.trigger(Deploy, fail=True).finished.result(10)
    assert (finished.state, finished.result) == (PlanState.PAUSED, PlanResult.ERROR)

    loaded = reader.load_execution_plan(finished.id)

    # exactly what the executor had in memory, timings included
    assert_same_plan(loaded, finished)
    run_steps = [s for s in loaded.steps.values() if s.phase == "run"]
    assert [s.state for s in run_steps] == [StepState.SUCCESS, StepState.ERROR, StepState.PENDING]
    for step in run_steps[:2]:
        assert_utc(step.started_at)
        assert_utc(step.ended_at)
        assert step.started_at is not None
        assert step.ended_at is not None
        assert step.started_at <= step.ended_at
    error = run_steps[1].error
    assert error is not None
    assert loaded.errors == [error]
    assert error.exception_class == "ValueError"
    assert error.message == "naïve failure ✗ 失败"
    assert error.backtrace[0] == "Traceback (most recent call last):"
    assert error.backtrace[-1] == "ValueError: naïve failure ✗ 失败"
    assert any("in run" in line and __file__ in line for line in error.backtrace)
    assert loaded.action(2).output == {"greeting": "hello web"}
    assert [h.name for h in loaded.execution_history] == ["start execution", "pause execution"]
    assert {h.world_id for h in loaded.execution_history} == {world.id}
    for entry in loaded.execution_history:
        assert_utc(entry.time)


def test_timings_come_back_as_aware_utc_with_microseconds(
    persistence: Persistence, reader: Persistence
) -> None:
    plan_id = store_plan(persistence)
    india = timezone(timedelta(hours=5, minutes=30))
    started = datetime(2024, 3, 1, 5, 29, 59, 123456, tzinfo=india)  # = T0 in UTC
    ended = T0 + timedelta(hours=2, microseconds=1)
    changes = Changes()
    changes.plans[plan_id] = {
        "state": "stopped",
        "result": "success",
        "started_at": started,
        "ended_at": ended,
        "execution_time": 7200.123456789,
        "real_time": 7200.000001,
    }
    changes.steps[(plan_id, 2)] = {
        "state": "success",
        "error": None,
        "started_at": started,
        "ended_at": ended,
        "execution_time": 1234.5678901234,
        "real_time": 7200.000001,
        "progress_done": 0.1,
        "attempts": 3,
        "next_attempt_at": ended,
        "errors": None,
    }
    changes.history.append((plan_id, started, "start execution", None))
    persistence.apply(changes)

    loaded = reader.load_execution_plan(plan_id)
    step = loaded.steps[2]
    for value in (loaded.started_at, step.started_at, loaded.execution_history[0].time):
        assert value == T0
        assert_utc(value)
        assert value.microsecond == 123456
    for value in (loaded.ended_at, step.ended_at, step.next_attempt_at):
        assert value == ended
        assert_utc(value)
        assert value.microsecond == 123457
    # durations are doubles everywhere: no precision lost on any database
    assert loaded.execution_time == 7200.123456789
    assert loaded.real_time == 7200.000001
    assert step.execution_time == 1234.5678901234
    assert step.real_time == 7200.000001
    assert step.progress_done == 0.1
    assert step.attempts == 3
    assert (loaded.state, loaded.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


def test_step_error_round_trips(persistence: Persistence, reader: Persistence) -> None:
    def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ConfigurationError("outer — with ünïcode\nand a second line") from inner

    try:
        fail()
    except ConfigurationError as exc:
        error = StepError.from_exception(exc)
    plan_id = store_plan(persistence)
    changes = Changes()
    changes.steps[(plan_id, 2)] = {
        "state": "error",
        "error": error.to_json(),
        "started_at": T0,
        "ended_at": T0,
        "execution_time": 0.5,
        "real_time": 0.5,
        "progress_done": 0.0,
        "attempts": 2,
        "next_attempt_at": None,
        "errors": [error.to_json(), StepError("ConnectionError", "refused").to_json()],
    }
    persistence.apply(changes)

    loaded = reader.load_execution_plan(plan_id)

    assert loaded.steps[2].error == error
    # a retried step's earlier errors come back in order
    assert loaded.steps[2].errors == [error, StepError("ConnectionError", "refused")]
    assert loaded.steps[2].attempts == 2
    assert loaded.errors == [error]
    assert error.exception_class == "dynflow.errors.ConfigurationError"
    assert error.message == "outer — with ünïcode\nand a second line"
    assert any("KeyError: 'inner'" in line for line in error.backtrace)
    assert any("in fail" in line for line in error.backtrace)


def test_history_keeps_its_order(persistence: Persistence, reader: Persistence) -> None:
    plan_id = store_plan(persistence)
    other = store_plan(persistence)
    world_id = str(uuid.uuid4())
    entries = [
        (plan_id, T0, "start execution", world_id),
        (other, T0, "start execution", world_id),
        (plan_id, T0 + timedelta(seconds=1), "pause execution", world_id),
        (plan_id, T0, "terminate execution", None),  # order of writing, not of time
    ]
    for entry in entries:
        persistence.apply(Changes(history=[entry]))

    history = reader.load_execution_plan(plan_id).execution_history

    assert [(h.time, h.name, h.world_id) for h in history] == [
        (t, n, w) for p, t, n, w in entries if p == plan_id
    ]
    assert [h.name for h in reader.load_execution_plan(other).execution_history] == [
        "start execution"
    ]


@pytest.mark.parametrize("with_envelope", [False, True])
def test_a_held_lock_makes_save_new_plan_raise_lock_taken_and_write_nothing(
    persistence: Persistence, reader: Persistence, with_envelope: bool
) -> None:
    receiver = str(uuid.uuid4())
    Coordinator(persistence.db, receiver).register_world(executor=True, queues=(), meta={})
    Coordinator(persistence.db, "holder").acquire("singleton_action", "Only")
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.build(Greet, ("x",), {})
    plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    mine = {"class": EXECUTION_LOCK, "id": plan.id, "owner_id": "me", "data": {}}
    taken = {"class": "singleton_action", "id": "Only", "owner_id": plan.id, "data": {}}
    envelope = (receiver, '{"a": "request"}') if with_envelope else None

    with pytest.raises(LockTaken) as raised:
        persistence.save_new_plan(plan, locks=[mine, taken], envelope=envelope)

    error = raised.value
    assert (error.lock_class, error.lock_id, error.owner_id) == (
        "singleton_action",
        "Only",
        "holder",
    )
    with pytest.raises(NotFound):
        reader.load_execution_plan(plan.id)
    assert Coordinator(reader.db, "me").find_locks(lock_class=EXECUTION_LOCK) == []
    assert _replies(reader, receiver) == []


def test_save_new_plan_stores_the_plan_the_builder_returned(
    persistence: Persistence, reader: Persistence
) -> None:
    builder = PlanBuilder(None)  # type: ignore[arg-type]
    builder.build(Greet, ("x" * 300,), {})
    plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
    plan.label = "L" * 300  # kept whole in memory, cut to the column's 255 when stored

    assert persistence.save_new_plan(plan) is False

    loaded = reader.load_execution_plan(plan.id)
    assert loaded.label == "L" * 255
    loaded.label = plan.label
    assert_same_plan(loaded, plan)


def test_loading_an_unknown_plan_raises_not_found(persistence: Persistence) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound, match=missing):
        persistence.load_execution_plan(missing)
    assert issubclass(NotFound, DynflowError)


def test_take_over_plan_moves_only_a_lock_held_by_the_given_owner(
    persistence: Persistence, reader: Persistence
) -> None:
    client, executor, other = (str(uuid.uuid4()) for _ in range(3))
    plan_id = store_plan(persistence)
    Coordinator(persistence.db, client).acquire(EXECUTION_LOCK, plan_id)
    expected = reader.load_execution_plan(plan_id)
    reply = (client, '{"an": "answer"}')
    postgresql = persistence.db.name == "postgresql"

    assert persistence.take_over_plan(plan_id, other, executor, {}, reply) == (False, None, False)
    assert _replies(reader, client) == []
    moved, plan, replied = persistence.take_over_plan(
        plan_id, client, executor, {"request_id": "r"}, reply
    )

    assert moved
    assert replied is postgresql  # elsewhere the caller sends the reply itself
    assert _replies(reader, client) == (['{"an": "answer"}'] if postgresql else [])
    if postgresql:  # read in the same statement
        assert plan is not None
        assert_same_plan(plan, expected)
    else:
        assert plan is None
    (lock,) = Coordinator(reader.db, executor).find_locks(lock_class=EXECUTION_LOCK, id=plan_id)
    assert (lock.owner_id, dict(lock.data)) == (executor, {"request_id": "r"})
    assert persistence.take_over_plan(plan_id, client, other, {}) == (False, None, False)
    missing = str(uuid.uuid4())
    Coordinator(persistence.db, client).acquire(EXECUTION_LOCK, missing)
    assert persistence.take_over_plan(missing, client, executor, {}) == (True, None, False)


def test_take_over_plans_moves_each_lock_held_by_its_requester_in_order(
    persistence: Persistence, reader: Persistence
) -> None:
    client, executor, other = (str(uuid.uuid4()) for _ in range(3))
    first, second, theirs = (store_plan(persistence) for _ in range(3))
    missing = str(uuid.uuid4())
    for plan_id in (first, second, missing):
        Coordinator(persistence.db, client).acquire(EXECUTION_LOCK, plan_id)
    Coordinator(persistence.db, other).acquire(EXECUTION_LOCK, theirs)
    postgresql = persistence.db.name == "postgresql"
    requests = [
        TakeOver(second, client, {"request_id": "2"}, (client, '"answer 2"')),
        TakeOver(theirs, client, {"request_id": "3"}, (client, '"answer 3"')),  # not its lock
        TakeOver(missing, client, {"request_id": "4"}),
        TakeOver(first, client, {"request_id": "1"}, (client, '"answer 1"')),
        TakeOver(first, client, {"request_id": "1 again"}, (client, '"again"')),
    ]

    taken = persistence.take_over_plans(executor, requests)

    assert [moved for moved, _, _ in taken] == [True, False, True, True, False]
    assert [replied for _, _, replied in taken] == [postgresql, False, False, postgresql, False]
    if postgresql:  # read in the same statement; the replies written with the moves
        assert [None if plan is None else plan.id for _, plan, _ in taken] == [
            second,
            None,
            None,
            first,
            None,
        ]
        assert_same_plan(taken[0][1], reader.load_execution_plan(second))  # type: ignore[arg-type]
        assert _replies(reader, client) == ['"answer 2"', '"answer 1"']
    else:  # the caller reads the plans and sends the replies itself
        assert all(plan is None for _, plan, _ in taken)
        assert _replies(reader, client) == []
    locks = Coordinator(reader.db, executor).find_locks(lock_class=EXECUTION_LOCK)
    owners = {lock.id: (lock.owner_id, dict(lock.data)) for lock in locks}
    assert owners[first] == (executor, {"request_id": "1"})
    assert owners[second] == (executor, {"request_id": "2"})
    assert owners[missing] == (executor, {"request_id": "4"})
    assert owners[theirs] == (other, {})
    assert persistence.take_over_plans(executor, []) == []


def _replies(reader: Persistence, receiver_id: str) -> list[str]:
    query = sa.select(envelopes.c.data).where(envelopes.c.receiver_id == receiver_id)
    with reader.db.read() as connection:
        return list(connection.execute(query.order_by(envelopes.c.id)).scalars())


# -- finding plans ------------------------------------------------------------------


@pytest.fixture
def catalogue(persistence: Persistence) -> dict[str, str]:
    """Six plans with known state, result, label, start time and caller; name -> id."""
    parent = store_plan(
        persistence, label="Parent", state="running", started_at=T0 + timedelta(seconds=5)
    )
    specs: dict[str, dict[str, Any]] = {
        "parent": {},
        "ok": {
            "state": "stopped",
            "result": "success",
            "started_at": T0,
            "ended_at": T0 + timedelta(seconds=10),
        },
        "warned": {
            "state": "stopped",
            "result": "warning",
            "started_at": T0 + timedelta(seconds=1),
            "caller_execution_plan_id": parent,
            "caller_action_id": 1,
        },
        "broken": {
            "state": "paused",
            "result": "error",
            "started_at": T0 + timedelta(seconds=2),
            "caller_execution_plan_id": parent,
            "caller_action_id": 1,
            "label": "Other",
        },
        "waiting": {"label": "Other"},  # planned, never started
        "failed": {
            "state": "stopped",
            "result": "error",
            "started_at": T0 + timedelta(seconds=3),
            "ended_at": T0 + timedelta(seconds=4),
        },
    }
    ids = {"parent": parent}
    for name, spec in specs.items():
        if name != "parent":
            ids[name] = store_plan(persistence, label=spec.pop("label", "Greet"), **spec)
    return ids


def names(plans: list[ExecutionPlan], catalogue: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in catalogue.items()}
    return [by_id[p.id] for p in plans]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"state": "stopped"}, {"ok", "warned", "failed"}),
        ({"state": PlanState.PLANNED}, {"waiting"}),
        ({"state": ["paused", "running"]}, {"broken", "parent"}),
        ({"state": []}, set()),
        ({"result": "error"}, {"broken", "failed"}),
        ({"result": ("success", PlanResult.WARNING)}, {"ok", "warned"}),
        ({"label": "Other"}, {"broken", "waiting"}),
        ({"label": ["Parent", "Other"]}, {"parent", "broken", "waiting"}),
        ({"state": "stopped", "result": ["error", "warning"]}, {"warned", "failed"}),
        ({"label": "Greet", "state": "paused"}, set()),
        ({}, {"parent", "ok", "warned", "broken", "waiting", "failed"}),
    ],
)
def test_find_execution_plans_filters_on_values_and_lists(
    persistence: Persistence,
    catalogue: dict[str, str],
    filters: dict[str, Any],
    expected: set[str],
) -> None:
    assert set(names(persistence.find_execution_plans(filters), catalogue)) == expected
    assert persistence.find_execution_plan_counts(filters) == len(expected)


def test_find_execution_plans_filters_on_id_and_caller(
    persistence: Persistence, catalogue: dict[str, str]
) -> None:
    def find(filters: dict[str, Any]) -> set[str]:
        return set(names(persistence.find_execution_plans(filters), catalogue))

    assert find({"id": catalogue["ok"]}) == {"ok"}
    assert find({"id": [catalogue["ok"], catalogue["failed"], str(uuid.uuid4())]}) == {
        "ok",
        "failed",
    }
    assert find({"id": str(uuid.uuid4())}) == set()
    assert find({"caller_execution_plan_id": catalogue["parent"]}) == {"warned", "broken"}
    assert find({"caller_execution_plan_id": [catalogue["parent"], catalogue["ok"]]}) == {
        "warned",
        "broken",
    }
    assert find({"caller_execution_plan_id": None}) == {"parent", "ok", "waiting", "failed"}
    children = persistence.find_execution_plans({"caller_execution_plan_id": catalogue["parent"]})
    assert {(p.caller_execution_plan_id, p.caller_action_id) for p in children} == {
        (catalogue["parent"], 1)
    }
    assert persistence.find_execution_plan_counts({"caller_execution_plan_id": None}) == 4


def test_found_plans_load_their_steps_and_actions(
    persistence: Persistence, catalogue: dict[str, str]
) -> None:
    [plan] = persistence.find_execution_plans({"id": catalogue["broken"]})
    assert_same_plan(plan, persistence.load_execution_plan(catalogue["broken"]))
    assert plan.entry_action.input == {"name": "x"}
    assert [s.phase for s in plan.steps.values()] == ["plan", "run"]


def test_find_execution_plans_orders_the_same_on_every_database(
    persistence: Persistence, catalogue: dict[str, str]
) -> None:
    def order(**options: Any) -> list[str]:
        return names(persistence.find_execution_plans(**options), catalogue)

    def by_id(*plans: str) -> list[str]:
        return sorted(plans, key=lambda n: catalogue[n])

    started = ["ok", "warned", "broken", "failed", "parent"]
    # a plan not started (or not ended) yet sorts after every one that has a time
    assert order(order_by="started_at", desc=False) == [*started, "waiting"]
    assert order() == ["waiting", *reversed(started)]  # default: started_at, newest first
    assert order(order_by="started_at", desc=True) == order()
    not_ended = by_id("parent", "warned", "broken", "waiting")
    assert order(order_by="ended_at", desc=False) == ["failed", "ok", *not_ended]
    # ties are broken in the same direction: by id; by the start time first when
    # sorting by state, result or label
    assert order(order_by="ended_at", desc=True) == [*reversed(not_ended), "ok", "failed"]
    by_state = ["broken", "waiting", "parent", "ok", "warned", "failed"]
    assert order(order_by="state", desc=False) == by_state
    assert order(order_by="state", desc=True) == list(reversed(by_state))
    by_result = ["broken", "failed", "parent", "waiting", "ok", "warned"]
    assert order(order_by="result", desc=False) == by_result
    assert order(order_by="result", desc=True) == list(reversed(by_result))
    by_label = ["ok", "warned", "failed", "broken", "waiting", "parent"]
    assert order(order_by="label", desc=False) == by_label
    assert order(order_by="label", desc=True) == list(reversed(by_label))
    assert order(order_by="id", desc=False) == by_id(*catalogue)
    assert order(order_by="id", desc=True) == list(reversed(by_id(*catalogue)))
    # the stored duration (a running plan's is stored when it stops or pauses)
    with persistence.db.write() as connection:
        for name, seconds in (("ok", 3.0), ("failed", 1.0), ("warned", 2.0)):
            connection.execute(
                sa.update(execution_plans)
                .where(execution_plans.c.id == catalogue[name])
                .values(real_time=seconds)
            )
    done = {"state": "stopped"}
    durations = {
        n: p.real_time
        for n, p in zip(order(filters=done), persistence.find_execution_plans(done), strict=True)
    }
    by_duration = order(order_by="real_time", desc=False, filters=done)
    assert by_duration == ["failed", "warned", "ok"]
    assert [durations[n] for n in by_duration] == [1.0, 2.0, 3.0]
    assert order(order_by="real_time", desc=True, filters=done) == list(reversed(by_duration))
    everything = order(order_by="real_time", desc=False)
    assert order(order_by="real_time", desc=True) == list(reversed(everything))


def test_counts_by_state_stop_at_the_cap(
    persistence: Persistence, catalogue: dict[str, str]
) -> None:
    exact = persistence.find_execution_plan_counts_by_state()
    assert exact[PlanState.STOPPED] == 3
    assert persistence.find_execution_plan_counts_by_state(cap=10) == exact
    capped = persistence.find_execution_plan_counts_by_state(cap=1)
    assert capped == {state: min(n, 2) for state, n in exact.items()}  # 2: more than 1
    filtered = persistence.find_execution_plan_counts_by_state({"result": "success"}, cap=1)
    assert filtered[PlanState.STOPPED] == 1
    assert sum(filtered.values()) == 1
    # limit: at most that many plans read, then grouped
    assert persistence.find_execution_plan_counts_by_state(limit=100) == exact
    partial = persistence.find_execution_plan_counts_by_state(limit=4)
    assert sum(partial.values()) == 4
    assert all(partial[state] <= n for state, n in exact.items())
    errors = persistence.find_execution_plan_counts_by_state({"result": "error"}, limit=100)
    assert sum(errors.values()) == 2


def test_load_plan_steps_reads_many_plans_with_their_steps(
    persistence: Persistence, catalogue: dict[str, str]
) -> None:
    wanted = [catalogue["broken"], catalogue["ok"], str(uuid.uuid4()), catalogue["ok"]]
    found = persistence.load_plan_steps(wanted)
    assert set(found) == {catalogue["broken"], catalogue["ok"]}
    for plan_id, plan in found.items():
        full = persistence.load_execution_plan(plan_id)
        assert (plan.state, plan.result, plan.progress) == (full.state, full.result, full.progress)
        assert plan.steps == full.steps
        assert plan.actions == []


def test_find_execution_plans_pages(persistence: Persistence, catalogue: dict[str, str]) -> None:
    everything = names(persistence.find_execution_plans(order_by="id", desc=False), catalogue)
    pages = [
        names(
            persistence.find_execution_plans(order_by="id", desc=False, page=page, per_page=4),
            catalogue,
        )
        for page in range(3)
    ]
    assert pages == [everything[:4], everything[4:], []]
    assert names(persistence.find_execution_plans(per_page=2), catalogue) == ["waiting", "parent"]
    assert names(
        persistence.find_execution_plans({"state": "stopped"}, page=1, per_page=2), catalogue
    ) == ["ok"]


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda p: p.find_execution_plans({"colour": "red"}), "'colour'"),
        (lambda p: p.find_execution_plans({"state": "stopped", "data": "x"}), "'data'"),
        (lambda p: p.find_execution_plans(order_by="colour"), "'colour'"),
        (lambda p: p.find_execution_plans(order_by="data"), "'data'"),
        (lambda p: p.find_execution_plans(per_page=0), "per_page"),
        (lambda p: p.find_execution_plans(page=-1, per_page=5), "page"),
        (lambda p: p.find_execution_plan_counts({"colour": "red"}), "'colour'"),
    ],
)
def test_unknown_filters_and_orders_are_configuration_errors(
    persistence: Persistence, call: Callable[[Persistence], Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        call(persistence)
    assert named in str(raised.value)


def test_unknown_filter_message_lists_the_known_ones(persistence: Persistence) -> None:
    with pytest.raises(ConfigurationError, match="colour") as raised:
        persistence.find_execution_plans({"colour": "red"})
    for known in ("state", "result", "label", "id", "caller_execution_plan_id"):
        assert known in str(raised.value)
    with pytest.raises(ConfigurationError, match=r"colour.*started_at"):
        persistence.find_execution_plans(order_by="colour")


def test_counts_match_the_plans_found(persistence: Persistence, catalogue: dict[str, str]) -> None:
    assert persistence.find_execution_plan_counts() == len(catalogue)
    assert persistence.find_execution_plan_counts({"state": "stopped"}) == 3
    assert persistence.find_execution_plan_counts({"result": ["error", "pending"]}) == 4
    assert persistence.find_execution_plan_counts({"id": str(uuid.uuid4())}) == 0


# -- batches of changes ---------------------------------------------------------------


def plan_values(state: str | None, result: str = "pending", **values: Any) -> dict[str, Any]:
    """A plan row of a batch: every mutable column, as the executor writes it."""
    row: dict[str, Any] = {
        "state": state,
        "result": result,
        "started_at": None,
        "ended_at": None,
        "execution_time": 0.0,
        "real_time": 0.0,
    }
    return row | values


def step_values(state: str, **values: Any) -> dict[str, Any]:
    """A step row of a batch: every mutable column, as the executor writes it."""
    row: dict[str, Any] = {
        "state": state,
        "error": None,
        "started_at": T0,
        "ended_at": T0 + timedelta(milliseconds=1),
        "execution_time": 0.001,
        "real_time": 0.001,
        "progress_done": 1.0 if state == "success" else 0.0,
        "attempts": 1,
        "next_attempt_at": None,
        "errors": None,
    }
    return row | values


def test_apply_writes_a_whole_batch(persistence: Persistence, reader: Persistence) -> None:
    first = store_plan(persistence, Deploy)
    second = store_plan(persistence, Greet, "solo")
    owner = str(uuid.uuid4())
    coordinator = Coordinator(persistence.db, owner)
    coordinator.acquire(EXECUTION_LOCK, first)
    coordinator.acquire(EXECUTION_LOCK, second)
    failure = StepError("RuntimeError", "no", ("line 1", "line 2"))
    changes = Changes()
    changes.steps[(first, 3)] = step_values("success")
    changes.steps[(first, 5)] = step_values("error", error=failure.to_json())
    changes.steps[(second, 2)] = step_values("success", execution_time=0.25)
    changes.outputs[(first, 2)] = {"greeting": "hello web", "nested": {"list": [1, 2.5, None]}}
    changes.outputs[(second, 1)] = {"greeting": "hello solo"}
    changes.plans[first] = plan_values("paused", "error", started_at=T0)
    changes.plans[second] = plan_values(
        "stopped",
        "success",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=1),
        execution_time=0.25,
        real_time=1.0,
    )
    changes.history.extend(
        [
            (first, T0, "start execution", owner),
            (second, T0, "start execution", owner),
            (first, T0, "pause execution", owner),
        ]
    )
    changes.released_locks.extend([(EXECUTION_LOCK, first, owner), (EXECUTION_LOCK, second, owner)])
    persistence.apply(changes)

    one = reader.load_execution_plan(first)
    assert (one.state, one.result, one.started_at) == (PlanState.PAUSED, PlanResult.ERROR, T0)
    assert one.steps[3].state is StepState.SUCCESS
    assert one.steps[5].state is StepState.ERROR
    assert one.steps[5].error == failure
    assert one.steps[6].state is StepState.PENDING  # untouched
    assert one.action(2).output == {"greeting": "hello web", "nested": {"list": [1, 2.5, None]}}
    assert one.action(3).output == {}
    assert [h.name for h in one.execution_history] == ["start execution", "pause execution"]
    two = reader.load_execution_plan(second)
    assert (two.state, two.result, two.execution_time, two.real_time) == (
        PlanState.STOPPED,
        PlanResult.SUCCESS,
        0.25,
        1.0,
    )
    assert two.ended_at == T0 + timedelta(seconds=1)
    assert two.steps[2].execution_time == 0.25
    assert two.entry_action.output == {"greeting": "hello solo"}
    assert Coordinator(reader.db, "someone").find_locks(lock_class=EXECUTION_LOCK) == []


def test_apply_releases_only_locks_still_owned(persistence: Persistence) -> None:
    plan_id = store_plan(persistence)
    holder = Coordinator(persistence.db, "new-owner")
    holder.acquire(EXECUTION_LOCK, plan_id)

    persistence.apply(Changes(released_locks=[(EXECUTION_LOCK, plan_id, "old-owner")]))

    [lock] = holder.find_locks(lock_class=EXECUTION_LOCK, id=plan_id)
    assert lock.owner_id == "new-owner"


def test_fenced_writes_pass_only_under_the_owners_current_registration(
    persistence: Persistence, reader: Persistence
) -> None:
    """The fence is the registration, not the world id: once the id is registered
    again, writes under the old registration land nowhere, even with the lock held."""
    plan_id = store_plan(persistence)
    old = Coordinator(persistence.db, "w")
    old.register_world(executor=True, queues=("default",), meta={})
    old.acquire(EXECUTION_LOCK, plan_id)
    old_token = old.registration()

    def batch(state: str) -> Changes:
        changes = Changes()
        changes.plans[plan_id] = plan_values(state, started_at=T0)
        changes.history.append((plan_id, T0, f"{state} here", "w"))
        return changes

    assert persistence.apply_fenced(batch("running"), "w", old_token) == set()
    assert reader.load_execution_plan(plan_id).state is PlanState.RUNNING

    new = Coordinator(persistence.db, "w")
    new.register_world(executor=True, queues=("default",), meta={})  # same id, again
    assert persistence.apply_fenced(batch("paused"), "w", old_token) == {plan_id}
    stored = reader.load_execution_plan(plan_id)
    assert stored.state is PlanState.RUNNING
    assert [h.name for h in stored.execution_history] == ["running here"]

    assert persistence.apply_fenced(batch("paused"), "w", new.registration()) == set()
    assert reader.load_execution_plan(plan_id).state is PlanState.PAUSED


def test_a_failing_batch_writes_nothing(persistence: Persistence, reader: Persistence) -> None:
    plan_id = store_plan(persistence)
    changes = Changes()
    changes.steps[(plan_id, 2)] = step_values("success")
    changes.outputs[(plan_id, 1)] = {"greeting": "hello"}
    changes.plans[plan_id] = plan_values(None, "error")  # state is NOT NULL
    with pytest.raises((sa.exc.IntegrityError, PersistenceError)):
        persistence.apply(changes)

    plan = reader.load_execution_plan(plan_id)
    assert plan.state is PlanState.PLANNED
    assert plan.steps[2].state is StepState.PENDING
    assert plan.entry_action.output == {}


def test_apply_joins_a_transaction_it_is_given(
    persistence: SqlPersistence, reader: Persistence
) -> None:
    plan_id = store_plan(persistence)

    class Abort(Exception):
        pass

    def abort_after_applying() -> None:
        with persistence.db.write() as connection:
            persistence.apply(Changes(plans={plan_id: plan_values("running")}), connection)
            raise Abort

    with pytest.raises(Abort):
        abort_after_applying()
    assert reader.load_execution_plan(plan_id).state is PlanState.PLANNED

    with persistence.db.write() as connection:
        persistence.apply(Changes(plans={plan_id: plan_values("running")}), connection)
    assert reader.load_execution_plan(plan_id).state is PlanState.RUNNING


# -- values -------------------------------------------------------------------------


def test_a_megabyte_of_json_round_trips(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    payload = "".join(chr(0x61 + i % 26) for i in range(1024 * 1024)) + "é🚀"
    world = make_world(any_db_url)
    finished = world.trigger(Blob, payload).finished.result(20)
    assert finished.result is PlanResult.SUCCESS

    loaded = reader.load_execution_plan(finished.id)

    assert loaded.entry_action.input == {"payload": payload}
    assert loaded.entry_action.output == {"payload": payload, "length": len(payload)}


def test_unicode_round_trips(any_db_url: str, make_world: MakeWorld, reader: Persistence) -> None:
    name = 'Zoë Ünïcødé — 名前 · Ωμέγα · 🚀🎉 · \u200b\t"quoted" \\ back'
    world = make_world(any_db_url)
    finished = world.trigger(Unicode, name).finished.result(10)
    assert finished.result is PlanResult.SUCCESS

    loaded = reader.load_execution_plan(finished.id)

    assert loaded.label == "Créer la VM ✓ 🚀 虚拟机"
    assert loaded.entry_action.label == "Créer la VM ✓ 🚀 虚拟机"
    assert loaded.entry_action.input == {"name": name}
    assert loaded.entry_action.output == {"echo": name, name: "clé ✓"}
    [found] = reader.find_execution_plans({"label": "Créer la VM ✓ 🚀 虚拟机"})
    assert found.id == finished.id


@pytest.mark.parametrize(
    "bogus",
    [
        "no_such_package_for_dynflow.actions.Gone",
        "tests.contract.test_persistence.NoSuchAction",
        "tests.contract.test_persistence.store_plan",  # importable, not an action
    ],
)
def test_an_action_whose_class_cannot_be_imported_loads_as_missing(
    any_db_url: str, make_world: MakeWorld, reader: Persistence, bogus: str
) -> None:
    world = make_world(any_db_url)
    plan_id = world.plan(Deploy).id
    with world.persistence.db.write() as connection:
        connection.execute(
            sa.update(actions_table)
            .where(actions_table.c.execution_plan_id == plan_id, actions_table.c.id == 3)
            .values(action_class=bogus)
        )

    loaded = reader.load_execution_plan(plan_id)

    missing = loaded.action(3)
    assert missing.action_class == bogus
    assert missing.missing is not None
    assert bogus in missing.missing
    assert missing.input == {"name": "db"}
    assert [a.missing for a in loaded.actions if a.id != 3] == [None, None]
    assert len(loaded.steps) == 7
    [found] = reader.find_execution_plans({"id": plan_id})
    assert found.action(3).missing == missing.missing


def test_a_plan_is_read_as_of_one_moment(persistence: Persistence, reader: Persistence) -> None:
    """A commit landing while a plan is read (here: right after its row was read, before
    its steps) shows in all of the plan or in none of it: never the row of one state
    with the steps and history of the next (a world recovering the plan meanwhile)."""
    from dynflow.persistence.tables import execution_history, execution_plans, steps

    plan_id = store_plan(persistence)
    world_id = str(uuid.uuid4())
    committed: list[str] = []

    def seen(plan: ExecutionPlan) -> tuple[PlanState, set[StepState], list[str]]:
        states = {step.state for step in plan.steps.values()}
        return plan.state, states, [entry.name for entry in plan.execution_history]

    before = seen(reader.load_execution_plan(plan_id))
    assert before[0] is PlanState.PLANNED
    assert StepState.PENDING in before[1]

    def commit() -> None:
        committed.append("done")
        with persistence.db.write() as writer:
            writer.execute(
                sa.update(execution_plans)
                .where(execution_plans.c.id == plan_id)
                .values(state="running")
            )
            writer.execute(
                sa.update(steps).where(steps.c.execution_plan_id == plan_id).values(state="running")
            )
            writer.execute(
                sa.insert(execution_history).values(
                    execution_plan_id=plan_id, time=T0, name="start execution", world_id=world_id
                )
            )

    def commit_meanwhile(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not committed and "dynflow_steps" in statement:
            commit()

    sa.event.listen(reader.db.reader, "before_cursor_execute", commit_meanwhile)
    try:
        plan = reader.load_execution_plan(plan_id)
    finally:
        sa.event.remove(reader.db.reader, "before_cursor_execute", commit_meanwhile)

    # PostgreSQL reads a plan in one statement, on the driver: the hook does not see it
    assert committed or reader.db.name == "postgresql"
    if not committed:
        commit()
    after = (PlanState.RUNNING, {StepState.RUNNING}, ["start execution"])
    assert seen(plan) in (before, after)
    assert seen(reader.load_execution_plan(plan_id)) == after


def test_the_output_references_are_kept_after_the_steps_ran(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)
    finished = world.trigger(Deploy).finished.result(10)
    assert finished.result is PlanResult.SUCCESS

    loaded = reader.load_execution_plan(finished.id)

    # the input holds the resolved value now, the stored map still has the reference
    assert loaded.entry_action.input == {"greeting": "hello web"}
    # the entry action's run step reads the first Greet's output
    entry, web, _ = (a.run_step_id for a in loaded.actions)
    assert loaded.requires == {entry: frozenset({web})}
    assert shape_of(loaded).requires == {entry: frozenset({web})}


def test_a_plan_stored_without_its_references_reads_them_from_the_inputs(
    persistence: Persistence, reader: Persistence
) -> None:
    plan_id = store_plan(persistence, Deploy, False, requires=None)

    loaded = reader.load_execution_plan(plan_id)

    assert loaded.requires is None
    entry, web, _ = (a.run_step_id for a in loaded.actions)
    assert shape_of(loaded).requires == {entry: frozenset({web})}
