"""Fencing by registration: a world declared dead while only cut off (a network
partition) writes nothing more for the plans it held, even after it registers again
under the same id, and drops what it held in memory before it does."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import Action, ExecutionError, PlanResult, PlanState, World
from dynflow.clock import ManualClock
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.persistence.tables import execution_plans
from dynflow.services.liveness import detection_bound
from tests.integration.test_lifecycle import _edit
from tests.recovery.test_invalidation import _age_heartbeat
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]

#: per test: a gate holding every run of the step, and how many runs started
GATES: dict[str, Gate] = {}
RUNS: dict[str, int] = {}
_runs_lock = threading.Lock()


class NotIdempotent(Action):
    """Numbers its runs; every run waits at the test's gate."""

    def run(self, event: Any = None) -> None:
        key = self.input["key"]
        with _runs_lock:
            RUNS[key] = RUNS.get(key, 0) + 1
            number = RUNS[key]
        GATES[key].pass_through()
        self.output["run"] = number


@pytest.fixture
def key(make_world: MakeWorld) -> Iterator[str]:
    """A gate under a fresh key, opened after the test (before the worlds terminate)."""
    name = str(uuid.uuid4())
    GATES[name] = Gate()
    yield name
    GATES.pop(name).open()
    RUNS.pop(name, None)


def _history(world: World, plan_id: str) -> list[tuple[str, str | None]]:
    plan = world.persistence.load_execution_plan(plan_id)
    return [(e.name, e.world_id) for e in plan.execution_history]


def _stopped_running(world: World, plan_id: str) -> Any:
    return eventually(
        lambda: (
            (p := world.persistence.load_execution_plan(plan_id)).state is not PlanState.RUNNING
            and p
        )
    )


@pytest.mark.usefixtures("commit_mode")
def test_a_world_declared_dead_registers_again_without_its_stale_run(
    db_url: str, make_world: MakeWorld, key: str
) -> None:
    """The partition sequence: A runs a step; B declares A dead and pauses the plan;
    A registers again; the plan is resumed on A; then A's old step ends. Its result
    must not be written: the plan ends with the resumed run's result, and no
    ``finish execution`` of A follows without a ``start execution`` of A before it."""
    clock = ManualClock()
    a = make_world(db_url, clock=clock, validity_check_interval=0, auto_execute=False)
    b = make_world(db_url, validity_check_interval=0, auto_execute=False)
    triggered = a.trigger(NotIdempotent, key=key)
    plan_id = triggered.execution_plan_id
    assert GATES[key].entered.wait(10)

    assert b.invalidate(a.id) == 1  # the partition: B declares A dead
    paused = _stopped_running(b, plan_id)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)

    clock.advance(a.config.heartbeat_interval)  # healed: A learns it was declared dead
    assert a.id in {w.id for w in b.coordinator.find_worlds()}  # and registered again
    with pytest.raises(ExecutionError, match="lost the execution lock"):
        triggered.finished.result(10)  # its old run's caller learns it is gone
    b.terminate()

    resumed = a.resume(plan_id)
    eventually(lambda: RUNS[key] == 2)  # the step runs again, in the resumed run
    GATES[key].open()  # both runs of the step end now: the old one and the new one
    done = resumed.result(10)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.entry_action.output == {"run": 2}  # the resumed run's result, not the old
    assert _history(a, plan_id) == [
        ("start execution", a.id),
        ("terminate execution", a.id),
        ("start execution", b.id),
        ("pause execution", b.id),
        ("start execution", a.id),
        ("finish execution", a.id),
    ]
    assert a.coordinator.find_locks(lock_class=EXECUTION_LOCK) == []


@pytest.mark.usefixtures("commit_mode")
def test_a_start_refused_as_already_running_releases_the_lock_it_took(
    db_url: str, make_world: MakeWorld, key: str
) -> None:
    """A world still running a plan whose lock it lost (it has not learned yet that it
    was declared dead) is asked to resume it: the lock taken for that start goes back,
    so the stale run stays fenced off."""
    a = make_world(db_url, validity_check_interval=0, auto_execute=False)
    triggered = a.trigger(NotIdempotent, key=key)
    plan_id = triggered.execution_plan_id
    assert GATES[key].entered.wait(10)
    before = a.persistence.load_execution_plan(plan_id)
    # what another world's invalidation left: lock released, plan paused
    a.coordinator.release(EXECUTION_LOCK, plan_id)
    _edit(
        db_url,
        sa.update(execution_plans)
        .where(execution_plans.c.id == plan_id)
        .values(state="paused", result="error"),
    )

    with pytest.raises(ExecutionError, match="already running"):
        a.resume(plan_id).result(10)
    eventually(lambda: a.coordinator.find_locks(lock_class=EXECUTION_LOCK, id=plan_id) == [])

    GATES[key].open()
    with pytest.raises(ExecutionError, match="lost the execution lock"):
        triggered.finished.result(10)
    after = a.persistence.load_execution_plan(plan_id)
    assert (after.state, after.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert after.execution_history == before.execution_history
    assert after.entry_action.output == {}


@pytest.mark.usefixtures("commit_mode")
def test_writes_under_an_older_registration_of_the_same_id_are_fenced_off(
    db_url: str, make_world: MakeWorld, key: str
) -> None:
    """The world id is registered again elsewhere (a second process started with the
    same id while this one was cut off) and holds the plan's lock under that id: this
    world's late step result is not written all the same."""
    a = make_world(db_url, validity_check_interval=0, auto_execute=False)
    triggered = a.trigger(NotIdempotent, key=key)
    plan_id = triggered.execution_plan_id
    assert GATES[key].entered.wait(10)
    before = a.persistence.load_execution_plan(plan_id)
    Coordinator(a.persistence.db, a.id).register_world(executor=True, queues=(), meta={})
    assert [lock.owner_id for lock in a.coordinator.find_locks(id=plan_id)] == [a.id]

    GATES[key].open()
    with pytest.raises(ExecutionError, match="lost the execution lock"):
        triggered.finished.result(10)
    after = a.persistence.load_execution_plan(plan_id)
    assert after.state is PlanState.RUNNING
    assert after.execution_history == before.execution_history
    assert after.entry_action.output == {}
    assert {s.id: s.state for s in after.steps.values()} == {
        s.id: s.state for s in before.steps.values()
    }


# -- judging other worlds ---------------------------------------------------------------


def test_a_world_is_judged_by_its_own_heartbeat_interval_and_lease(
    db_url: str, make_world: MakeWorld
) -> None:
    """An executor with a 1 s lease checks a client with a 5 s heartbeat and a 15 s
    lease: 3 s without a heartbeat is nothing for the client; 11 s makes it late
    (pinged: it does not answer); past 15 s its lease is over."""
    checker = make_world(
        db_url,
        auto_execute=False,
        validity_check_interval=0,
        connector="database",
        heartbeat_interval=0.3,
        lease=1.0,
        ping_timeout=0.5,
    )
    client = Coordinator(checker.persistence.db, str(uuid.uuid4()))

    def register_client() -> None:
        client.register_world(
            executor=False,
            queues=(),
            meta={"hostname": "elsewhere.example", "pid": 1},
            heartbeat_interval=5.0,
            lease=15.0,
        )

    register_client()
    for seconds, connector, invalidated in [
        (3, "database", 0),
        (11, "database", 1),
        (3, "direct", 0),
        (16, "direct", 1),
    ]:
        if client.world_id not in {w.id for w in checker.coordinator.find_worlds()}:
            register_client()
        _age_heartbeat(db_url, client.world_id, seconds, connector)
        assert checker.perform_validity_checks() == invalidated, (seconds, connector)


def test_a_world_that_stops_heartbeating_is_invalidated_within_the_bound(
    db_url: str, make_world: MakeWorld
) -> None:
    checker = make_world(db_url, auto_execute=False, validity_check_interval=0.2, ping_timeout=0.5)
    silent = Coordinator(checker.persistence.db, str(uuid.uuid4()))
    silent.register_world(
        executor=True,
        queues=("default",),
        meta={"hostname": "elsewhere.example", "pid": 1, "connector": "direct"},
        heartbeat_interval=0.3,
        lease=1.0,
    )  # and never heartbeats
    [record] = [w for w in checker.coordinator.find_worlds() if w.id == silent.world_id]
    assert record.heartbeat_at is not None
    bound = detection_bound(checker.config, lease=1.0)
    assert bound == 1.0 + 0.2 + 0.5

    eventually(
        lambda: silent.world_id not in {w.id for w in checker.coordinator.find_worlds()},
        timeout=bound + 5,
    )
    elapsed = (checker.coordinator.database_now() - record.heartbeat_at).total_seconds()
    assert elapsed <= bound + 0.5  # what observing it here took


def test_pinging_other_worlds_does_not_delay_the_heartbeat(
    db_url: str, make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """A check waits up to ``ping_timeout`` for a late world's answer; this world's
    heartbeat goes on meanwhile, so its own lease never runs out because of it."""
    world = make_world(
        db_url,
        auto_execute=False,
        connector="database",
        heartbeat_interval=0.1,
        lease=1.0,
        validity_check_interval=0.1,
        ping_timeout=3.0,
    )
    late = Coordinator(world.persistence.db, str(uuid.uuid4()))
    late.register_world(
        executor=False,
        queues=(),
        meta={"hostname": "elsewhere.example", "pid": 1, "connector": "database"},
        heartbeat_interval=0.05,
        lease=60.0,
    )  # late at once, and nobody answers its pings
    worst = 0.0

    def late_world_invalidated() -> bool:
        nonlocal worst
        worlds = {w.id: w for w in world.coordinator.find_worlds()}
        beat = worlds[world.id].heartbeat_at
        assert beat is not None
        worst = max(worst, (world.coordinator.database_now() - beat).total_seconds())
        return late.world_id not in worlds

    eventually(late_world_invalidated, timeout=20)
    assert worst < 1.0, f"the heartbeat was {worst:.2f} s old while pinging"
    assert "declared dead" not in caplog.text
