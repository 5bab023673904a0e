"""Code versions: executor worlds run only plans of their version (or of none), plans
of a version no executor runs wait for one, and ``set_code_version`` moves paused and
planned plans between versions; on every database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from dynflow import Action, ExecutionError, PlanResult, PlanState, World
from dynflow.cluster.client_dispatcher import WAITING
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]
TIMEOUT = 30

_LOCK = threading.Lock()
#: per test tag: how often each plan's run failed on purpose so far
FAILURES: dict[str, int] = {}
GATES: dict[str, Gate] = {}


class Note(Action):
    def plan(self, tag: str) -> None:
        self.plan_self(tag=tag)

    def run(self, event: Any = None) -> None:
        self.output["ok"] = True


class FailsOnce(Note):
    def run(self, event: Any = None) -> None:
        with _LOCK:
            FAILURES[self.input["tag"]] = FAILURES.get(self.input["tag"], 0) + 1
            if FAILURES[self.input["tag"]] == 1:
                raise RuntimeError("first run fails")
        super().run(event)


class Undoable(Note):
    def revert(self) -> None:
        self.output["undone"] = True


class Gated(Note):
    def run(self, event: Any = None) -> None:
        GATES[self.input["tag"]].pass_through()
        super().run(event)


@pytest.fixture
def tag() -> Any:
    name = uuid.uuid4().hex
    GATES[name] = Gate()
    yield name
    GATES.pop(name).open()
    FAILURES.pop(name, None)


def _runners(world: World, plan_id: str) -> list[str | None]:
    plan = world.persistence.load_execution_plan(plan_id)
    return [e.world_id for e in plan.execution_history if e.name == "start execution"]


def _stopped(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        ),
        timeout=TIMEOUT,
    )


def _waits(client: World) -> None:
    """The client's execution request waits for an executor of the plan's version."""
    eventually(lambda: WAITING in client.cluster.client.pending_receivers(), timeout=TIMEOUT)


def test_round_robin_sends_each_plan_to_an_executor_of_its_version(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    old = make_world(db_url, code_version="v1")
    new = make_world(db_url, code_version="v2")
    registered = {w.id: w.meta.get("code_version") for w in old.coordinator.find_worlds()}
    assert (registered[old.id], registered[new.id]) == ("v1", "v2")
    clients = {
        "v1": make_world(db_url, executor=False, code_version="v1"),
        "v2": make_world(db_url, executor=False, code_version="v2"),
    }
    triggered = [
        (version, client.trigger(Note, tag))
        for _ in range(4)
        for version, client in clients.items()
    ]
    expected = {"v1": old.id, "v2": new.id}
    for version, t in triggered:
        plan = t.finished.result(TIMEOUT)
        assert (plan.state, plan.result, plan.code_version) == (
            PlanState.STOPPED,
            PlanResult.SUCCESS,
            version,
        )
        assert _runners(old, plan.id) == [expected[version]]


def test_plans_of_no_version_run_anywhere_and_executors_of_none_run_any_plan(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    versioned = make_world(db_url, code_version="v1")
    anyone = make_world(db_url, executor=False, code_version=None)
    plans = [anyone.trigger(Note, tag) for _ in range(4)]
    for t in plans:
        assert t.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert {r for t in plans for r in _runners(versioned, t.execution_plan_id)} == {versioned.id}
    versioned.terminate()

    unversioned = make_world(db_url, code_version=None)
    for version in ("v1", "v2", None):
        client = make_world(db_url, executor=False, code_version=version)
        plan = client.trigger(Note, tag).finished.result(TIMEOUT)
        assert plan.result is PlanResult.SUCCESS
        assert _runners(unversioned, plan.id) == [unversioned.id]


def test_a_plan_waits_for_an_executor_of_its_version(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    old = make_world(db_url, code_version="v1")
    client = make_world(db_url, executor=False, code_version="v2")
    triggered = client.trigger(Note, tag)
    _waits(client)
    assert old.recover() == 0
    plan = old.persistence.load_execution_plan(triggered.execution_plan_id)
    assert (plan.state, plan.result) == (PlanState.PLANNED, PlanResult.PENDING)
    assert not triggered.finished.done()

    new = make_world(db_url, code_version="v2")
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert _runners(new, plan.id) == [new.id]


def test_an_executor_routes_a_plan_of_another_version_to_an_executor_of_it(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    old = make_world(db_url, code_version="v1")
    planner = make_world(db_url, executor=False, code_version="v2")
    plan_id = planner.plan(Note, tag).id
    executing = old.execute(plan_id)
    _waits(old)
    assert old.persistence.load_execution_plan(plan_id).state is PlanState.PLANNED

    new = make_world(db_url, code_version="v2", auto_execute=False)
    assert executing.result(TIMEOUT).result is PlanResult.SUCCESS
    assert _runners(new, plan_id) == [new.id]


def test_an_executor_of_another_version_hands_a_revert_to_an_executor_of_the_plans(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    new = make_world(db_url, code_version="v2")
    done = new.trigger(Undoable, tag).finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    old = make_world(db_url, code_version="v1")
    reverted = old.revert(done.id).result(TIMEOUT)
    assert (reverted.state, reverted.result) == (PlanState.STOPPED, PlanResult.REVERTED)
    assert _runners(old, done.id) == [new.id, new.id]


def test_an_executor_starting_picks_up_the_planned_plans_of_its_version(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    planner = make_world(db_url, executor=False, code_version="v2")
    waiting = [planner.plan(Note, tag).id for _ in range(3)]
    other = planner.plan(Note, tag).id
    planner.set_code_version(other, "v3")
    planner.terminate()  # its planned plans are left to the executors of their version
    old = make_world(db_url, code_version="v1")
    assert old.recover() == 0

    new = make_world(db_url, code_version="v2")
    for plan_id in waiting:
        assert _stopped(new, plan_id).result is PlanResult.SUCCESS
        assert _runners(new, plan_id) == [new.id]
    assert new.recover() == 0
    assert new.persistence.load_execution_plan(other).state is PlanState.PLANNED


def test_set_code_version_moves_a_planned_plan(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    old = make_world(db_url, code_version="v1")
    plan_id = old.plan(Note, tag).id
    moved = old.set_code_version(plan_id, "v2")
    assert moved.code_version == "v2"
    assert moved.state is PlanState.PLANNED
    assert [(e.name, e.world_id) for e in moved.execution_history] == [
        ("code version v1 -> v2", old.id)
    ]
    assert old.recover() == 0
    new = make_world(db_url, code_version="v2")
    assert _stopped(new, plan_id).result is PlanResult.SUCCESS
    assert _runners(new, plan_id) == [new.id]

    other = old.plan(Note, tag).id
    assert old.set_code_version(other, None).code_version is None
    history = old.persistence.load_execution_plan(other).execution_history
    assert [e.name for e in history] == ["code version v1 -> -"]
    assert old.execute(other).result(TIMEOUT).result is PlanResult.SUCCESS
    assert _runners(old, other) == [old.id]


def test_set_code_version_moves_a_paused_plan_for_the_new_code_to_resume(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    old = make_world(db_url, code_version="v1")
    paused = old.trigger(FailsOnce, tag).finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    old.terminate()  # the old code is gone: the paused plan would wait for it
    new = make_world(db_url, code_version="v2")
    assert new.set_code_version(paused.id, "v2").code_version == "v2"
    resumed = new.resume(paused.id).result(TIMEOUT)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert _runners(new, paused.id) == [old.id, new.id]
    names = [e.name for e in resumed.execution_history]
    assert names.index("code version v1 -> v2") < len(names) - 2


def test_set_code_version_refuses_running_and_stopped_plans(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    world = make_world(db_url, code_version="v1")
    running = world.trigger(Gated, tag)
    assert GATES[tag].entered.wait(TIMEOUT)
    with pytest.raises(ExecutionError, match="only a paused or planned plan"):
        world.set_code_version(running.execution_plan_id, "v2")
    GATES[tag].open()
    stopped = running.finished.result(TIMEOUT)
    with pytest.raises(ExecutionError, match="is stopped/success: only a paused or planned"):
        world.set_code_version(stopped.id, "v2")
    assert world.persistence.load_execution_plan(stopped.id).code_version == "v1"


def test_a_due_delayed_plan_is_taken_up_only_by_an_executor_of_its_version(
    db_url: str, make_world: MakeWorld, tag: str
) -> None:
    new = make_world(db_url, code_version="v2", delayed_interval=0.2)
    client = make_world(db_url, executor=False, code_version="v1")
    delayed = client.delay(Note, 0, tag)
    assert new.delayed.check() == 0
    assert new.persistence.load_execution_plan(delayed.id).state is PlanState.SCHEDULED
    with pytest.raises(ExecutionError, match="of code version v1"):
        new.execute(delayed.id).result(TIMEOUT)

    old = make_world(db_url, code_version="v1", delayed_interval=0.2)
    assert _stopped(old, delayed.id).result is PlanResult.SUCCESS
    assert _runners(old, delayed.id) == [old.id]
