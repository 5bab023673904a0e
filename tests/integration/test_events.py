"""Suspended steps and events on a threaded world: delivery, ordering, refusals, the clock
(``plan_event``, ``schedule_timeout``), halting and terminating with suspended steps."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pytest

from dynflow import (
    Action,
    ExecutionError,
    ExecutionPlan,
    NotFound,
    NotSerializable,
    PlanResult,
    PlanState,
    StepState,
    SuspendedAction,
    World,
)
from dynflow.testing import InThreadWorld, ManualClock
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10
#: no step has this id: an event to it is a round trip through the executor's inbox
NO_STEP = 10**6


# -- shared state between a test and its actions ---------------------------------------


@dataclass
class Probe:
    """What the suspending actions of one test report, and the gates that hold them."""

    key: str
    #: the event of each run call, in call order (None: the first run)
    runs: list[Any] = field(default_factory=list)
    #: what each suspend callback received
    suspended: list[SuspendedAction] = field(default_factory=list)
    #: the futures of the events the suspend callbacks sent
    answers: list[Future[Any]] = field(default_factory=list)
    #: run call number (1-based) -> the gate that holds that call
    gates: dict[int, Gate] = field(default_factory=dict)
    active: int = 0
    overlapped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, call: int) -> Gate:
        gate = self.gates[call] = Gate()
        return gate

    def enter(self, event: Any) -> None:
        with self.lock:
            self.runs.append(event)
            self.active += 1
            self.overlapped |= self.active > 1
            gate = self.gates.get(len(self.runs))
        if gate is not None:
            gate.pass_through()

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


PROBES: dict[str, Probe] = {}
P = TypeVar("P", bound=Probe)


class WebhookDown(Exception):
    """Raised by a suspend callback."""


@contextmanager
def registered(probe: P) -> Iterator[P]:
    """Make ``probe`` findable by its actions; open its gates when done."""
    PROBES[probe.key] = probe
    try:
        yield probe
    finally:
        for gate in probe.gates.values():
            gate.open()  # never leave a worker blocked
        del PROBES[probe.key]


@pytest.fixture
def probe(make_world: MakeWorld) -> Iterator[Probe]:
    # depends on make_world so that its gates open before the worlds terminate
    with registered(Probe(uuid.uuid4().hex)) as found:
        yield found


# -- actions ---------------------------------------------------------------------------


class Waiter(Action):
    """Suspends until it has received ``expect`` events; its output lists them."""

    def run(self, event: Any = None) -> None:
        probe = PROBES[self.input["key"]]
        probe.enter(event)
        try:
            if event is not None:
                self.output["events"] = [*self.output.get("events", []), event]
            if len(self.output.get("events", [])) < self.input.get("expect", 1):
                self.suspend(partial(on_suspend, probe, self.input.get("answer")))
        finally:
            probe.leave()


def on_suspend(probe: Probe, answer: Any, suspended: SuspendedAction) -> None:
    """The suspend callback: records the step, and answers at once when told to."""
    probe.suspended.append(suspended)
    if answer == "refuse":
        raise WebhookDown("cannot register the webhook")
    if answer is not None:
        probe.answers.append(suspended.event(answer))


class AsyncWaiter(Action):
    """An ``async def run`` that suspends until one event arrives."""

    async def run(self, event: Any = None) -> None:
        probe = PROBES[self.input["key"]]
        probe.enter(event)
        probe.leave()
        if event is None:
            self.suspend(probe.suspended.append)
        self.output["event"] = event


class TimedWaiter(Waiter):
    """A waiter that, on its first run, sets a timeout and/or plans an event to itself."""

    def run(self, event: Any = None) -> None:
        if event is None:
            if "timeout" in self.input:
                self.schedule_timeout(self.input["timeout"])
            if "ping_after" in self.input:
                self.plan_event({"ping": True}, delay=self.input["ping_after"])
        super().run(event)


class Quick(Action):
    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class QuickThenWaiter(Action):
    def plan(self, key: str) -> None:
        with self.sequence():
            self.plan_action(Quick)
            self.plan_action(Waiter, key=key)


# -- helpers ---------------------------------------------------------------------------


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def step_id_of(plan: ExecutionPlan, action_class: type[Action]) -> int:
    """The run step of the (only) action of ``action_class``."""
    (step_id,) = (
        s.id
        for s in plan.steps.values()
        if s.action_class == action_class.class_name() and s.phase == "run"
    )
    return step_id


def wait_suspended(world: World, probe: Probe, plan_id: str, times: int = 1) -> ExecutionPlan:
    """Wait until the step suspended ``times`` times and the database shows it suspended."""
    eventually(lambda: len(probe.suspended) >= times)

    def check() -> ExecutionPlan | None:
        plan = load(world, plan_id)
        states = {s.state for s in plan.steps.values()}
        return plan if StepState.SUSPENDED in states and StepState.RUNNING not in states else None

    found: ExecutionPlan = eventually(check)
    return found


def settle(world: World, plan_id: str) -> None:
    """Return once the executor handled (and committed) everything posted before this call.

    An event to a step that does not exist goes through the same inbox as every other
    message, and its future resolves only after the batch it was in was committed.
    """
    assert world.event(plan_id, NO_STEP, optional=True).result(TIMEOUT) is False


def manual_world(make_world: MakeWorld, db_url: str, **options: Any) -> tuple[World, ManualClock]:
    clock = ManualClock()
    # heartbeats are clock callbacks too: keep them out of the way of the test's advances
    return make_world(
        db_url, clock=clock, heartbeat_interval=3600, lease=3 * 3600, **options
    ), clock


# -- suspending and delivering ---------------------------------------------------------


def test_suspended_step_waits_and_its_callback_delivers_an_event(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Waiter, key=probe.key)
    plan = wait_suspended(world, probe, triggered.execution_plan_id)

    assert plan.state is PlanState.RUNNING
    assert plan.result is PlanResult.PENDING
    step_id = step_id_of(plan, Waiter)
    assert plan.steps[step_id].state is StepState.SUSPENDED
    assert plan.steps[step_id].ended_at is None
    (suspended,) = probe.suspended
    assert suspended.execution_plan_id == triggered.execution_plan_id
    assert suspended.step_id == step_id
    assert not triggered.finished.done()

    assert suspended.event({"answer": 42}).result(TIMEOUT) is True

    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.steps[step_id].state is StepState.SUCCESS
    assert done.entry_action.output["events"] == [{"answer": 42}]
    assert probe.runs == [None, {"answer": 42}]
    stored = load(world, triggered.execution_plan_id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert stored.entry_action.output["events"] == [{"answer": 42}]


def test_world_event_is_delivered_as_run_event(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key, expect=2)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), Waiter)

    assert world.event(plan_id, step_id, "first").result(TIMEOUT) is True
    wait_suspended(world, probe, plan_id, times=2)
    stored = load(world, plan_id)
    assert stored.state is PlanState.RUNNING
    assert stored.entry_action.output["events"] == ["first"]  # output kept while suspended

    assert world.event(plan_id, step_id, [1, "two", None]).result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output["events"] == ["first", [1, "two", None]]
    assert probe.runs == [None, "first", [1, "two", None]]


def test_events_to_one_step_arrive_in_order_one_run_at_a_time(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key, expect=5)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), Waiter)
    first_event_run = probe.hold(2)

    futures = [world.event(plan_id, step_id, n) for n in range(5)]
    assert first_event_run.entered.wait(TIMEOUT)
    settle(world, plan_id)  # every event has reached the executor
    assert futures[0].result(TIMEOUT) is True
    assert not any(f.done() for f in futures[1:])  # the step is running: they wait
    assert probe.runs == [None, 0]

    first_event_run.open()
    assert [f.result(TIMEOUT) for f in futures] == [True] * 5
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output["events"] == [0, 1, 2, 3, 4]
    assert probe.runs == [None, 0, 1, 2, 3, 4]
    assert not probe.overlapped


def test_event_sent_while_the_step_runs_is_delivered_after_it_suspends(
    world: World, probe: Probe
) -> None:
    first_run = probe.hold(1)
    triggered = world.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    assert first_run.entered.wait(TIMEOUT)
    running = load(world, plan_id)
    step_id = step_id_of(running, Waiter)
    assert running.steps[step_id].state is StepState.RUNNING

    early = world.event(plan_id, step_id, "early")
    settle(world, plan_id)
    assert not early.done()
    assert probe.runs == [None]

    first_run.open()
    assert early.result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert probe.runs == [None, "early"]
    assert len(probe.suspended) == 1  # the first run did suspend before the event ran
    assert not probe.overlapped


def test_an_event_sent_from_the_suspend_callback_is_delivered(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key, answer="at once")
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output["events"] == ["at once"]
    assert [f.result(TIMEOUT) for f in probe.answers] == [True]
    assert probe.runs == [None, "at once"]
    assert not probe.overlapped


def test_an_in_thread_world_delivers_events_in_the_calling_thread(
    db_url: str, probe: Probe
) -> None:
    world = InThreadWorld(db_url)
    try:
        answered = world.trigger(Waiter, key=probe.key, answer="at once")
        assert answered.finished.result(0).entry_action.output["events"] == ["at once"]

        waiting = world.trigger(Waiter, key=probe.key, expect=2)
        plan = load(world, waiting.execution_plan_id)
        step_id = step_id_of(plan, Waiter)
        assert (plan.state, plan.steps[step_id].state) == (
            PlanState.RUNNING,
            StepState.SUSPENDED,
        )
        assert world.event(plan.id, step_id, 1).result(0) is True
        assert not waiting.finished.done()
        assert world.event(plan.id, step_id, 2).result(0) is True
        done = waiting.finished.result(0)
        assert done.result is PlanResult.SUCCESS
        assert done.entry_action.output["events"] == [1, 2]
    finally:
        world.terminate()


def test_an_async_run_suspends_and_takes_events(world: World, probe: Probe) -> None:
    triggered = world.trigger(AsyncWaiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), AsyncWaiter)
    assert probe.suspended[0].step_id == step_id

    assert world.event(plan_id, step_id, {"async": True}).result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output == {"event": {"async": True}}
    assert probe.runs == [None, {"async": True}]


def test_a_suspend_callback_that_raises_fails_the_step(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key, answer="refuse")
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = load(world, done.id).steps[step_id_of(done, Waiter)]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class.endswith("WebhookDown")
    assert step.error.message == "cannot register the webhook"


# -- events that cannot be delivered ---------------------------------------------------


def test_event_for_a_finished_step_fails_or_is_dropped_when_optional(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(QuickThenWaiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    plan = wait_suspended(world, probe, plan_id)
    quick = step_id_of(plan, Quick)
    waiter = step_id_of(plan, Waiter)
    assert plan.steps[quick].state is StepState.SUCCESS

    # the plan runs, but this step of it is done
    with pytest.raises(ExecutionError, match=rf"step {quick} .* is success, not suspended"):
        world.event(plan_id, quick, "late").result(TIMEOUT)
    assert world.event(plan_id, quick, "late", optional=True).result(TIMEOUT) is False

    assert world.event(plan_id, waiter, "go").result(TIMEOUT) is True
    assert triggered.finished.result(TIMEOUT).result is PlanResult.SUCCESS

    # the plan is done too
    with pytest.raises(ExecutionError, match=rf"step {waiter} .* is success, not suspended"):
        world.event(plan_id, waiter, "late").result(TIMEOUT)
    assert world.event(plan_id, waiter, "late", optional=True).result(TIMEOUT) is False
    assert probe.runs == [None, "go"]
    stored = load(world, plan_id)
    outputs = {a.action_class: a.output for a in stored.actions}
    assert outputs[Waiter.class_name()] == {"events": ["go"]}


def test_event_for_an_unknown_plan_or_step_fails_with_not_found(world: World, probe: Probe) -> None:
    with pytest.raises(NotFound):
        world.event(str(uuid.uuid4()), 1, "x").result(TIMEOUT)
    assert world.event(str(uuid.uuid4()), 1, "x", optional=True).result(TIMEOUT) is False

    triggered = world.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), Waiter)
    with pytest.raises(NotFound, match=f"has no step {NO_STEP}"):  # running plan
        world.event(plan_id, NO_STEP, "x").result(TIMEOUT)

    assert world.event(plan_id, step_id, "done").result(TIMEOUT) is True
    triggered.finished.result(TIMEOUT)
    with pytest.raises(NotFound, match=f"has no step {NO_STEP}"):  # stopped plan
        world.event(plan_id, NO_STEP, "x").result(TIMEOUT)
    assert probe.runs == [None, "done"]


def test_non_json_payload_fails_and_nothing_is_delivered(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), Waiter)

    for payload in (object(), {"when": threading.Event()}, {1, 2}):
        with pytest.raises(NotSerializable):
            world.event(plan_id, step_id, payload).result(TIMEOUT)
    settle(world, plan_id)
    stored = load(world, plan_id)
    assert stored.steps[step_id].state is StepState.SUSPENDED
    assert stored.entry_action.output == {}
    assert probe.runs == [None]

    assert world.event(plan_id, step_id, {"ok": True}).result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert done.entry_action.output["events"] == [{"ok": True}]
    assert probe.runs == [None, {"ok": True}]


# -- the clock: events planned for later, timeouts -------------------------------------


def test_plan_event_arrives_only_after_its_delay(
    make_world: MakeWorld, db_url: str, probe: Probe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(TimedWaiter, key=probe.key, ping_after=30)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), TimedWaiter)

    clock.advance(29)
    settle(world, plan_id)
    assert load(world, plan_id).steps[step_id].state is StepState.SUSPENDED
    assert probe.runs == [None]

    clock.advance(1)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.runs == [None, {"ping": True}]


def test_plan_event_on_the_real_clock(world: World, probe: Probe) -> None:
    triggered = world.trigger(TimedWaiter, key=probe.key, ping_after=0)
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert probe.runs == [None, {"ping": True}]


def test_schedule_timeout_fails_the_step_still_suspended(
    make_world: MakeWorld, db_url: str, probe: Probe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(TimedWaiter, key=probe.key, timeout=60)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), TimedWaiter)

    clock.advance(59)
    settle(world, plan_id)
    assert load(world, plan_id).steps[step_id].state is StepState.SUSPENDED

    clock.advance(1)
    done = triggered.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = load(world, plan_id).steps[step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class == "TimeoutError"
    assert "timed out" in step.error.message
    assert "60" in step.error.message
    assert step.ended_at is not None
    assert probe.runs == [None]
    with pytest.raises(ExecutionError):  # the plan is paused: events are refused
        world.event(plan_id, step_id, "too late").result(TIMEOUT)


def test_an_event_before_the_timeout_cancels_it(
    make_world: MakeWorld, db_url: str, probe: Probe
) -> None:
    world, clock = manual_world(make_world, db_url)
    triggered = world.trigger(TimedWaiter, key=probe.key, timeout=60, expect=2)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), TimedWaiter)

    clock.advance(30)
    assert world.event(plan_id, step_id, "in time").result(TIMEOUT) is True
    wait_suspended(world, probe, plan_id, times=2)

    clock.advance(60)  # past the timeout of the first run
    settle(world, plan_id)
    stored = load(world, plan_id)
    assert stored.state is PlanState.RUNNING
    assert stored.steps[step_id].state is StepState.SUSPENDED

    assert world.event(plan_id, step_id, "second").result(TIMEOUT) is True
    done = triggered.finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output["events"] == ["in time", "second"]


# -- halting and terminating with suspended steps --------------------------------------


def test_halt_stops_a_plan_with_a_suspended_step_at_once(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(world, probe, plan_id), Waiter)

    halted = world.halt(plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert triggered.finished.result(TIMEOUT).state is PlanState.STOPPED
    stored = load(world, plan_id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.steps[step_id].state is StepState.ERROR
    assert "halt" in str(stored.steps[step_id].error)
    assert "halt execution" in [entry.name for entry in stored.execution_history]

    with pytest.raises(ExecutionError, match="not suspended"):
        world.event(plan_id, step_id, "late").result(TIMEOUT)
    (suspended,) = probe.suspended
    with pytest.raises(ExecutionError):
        suspended.event("late").result(TIMEOUT)
    assert suspended.event("late", optional=True).result(TIMEOUT) is False
    assert probe.runs == [None]


def test_terminate_pauses_a_suspended_plan_and_resume_keeps_it_waiting(
    make_world: MakeWorld, db_url: str, probe: Probe
) -> None:
    first = make_world(db_url)
    triggered = first.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(first, probe, plan_id), Waiter)

    first.terminate()
    paused = triggered.finished.result(TIMEOUT)
    assert paused.state is PlanState.PAUSED
    second = make_world(db_url, auto_execute=False)  # resumed explicitly below
    stored = load(second, plan_id)
    assert (stored.state, stored.result) == (PlanState.PAUSED, PlanResult.PENDING)
    assert stored.steps[step_id].state is StepState.SUSPENDED
    assert stored.steps[step_id].error is None

    # paused by the termination, the plan is between executors: the event is sent
    # again until an executor runs the plan (here: once it is resumed)
    early = second.event(plan_id, step_id, "while paused")
    assert not early.done()
    resumed = second.resume(plan_id)
    assert early.result(TIMEOUT) is True

    done = resumed.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.entry_action.output["events"] == ["while paused"]
    assert probe.runs == [None, "while paused"]  # resuming did not run the step again


def test_halt_while_the_step_runs_fails_the_events_waiting_for_it(
    world: World, probe: Probe
) -> None:
    first_run = probe.hold(1)
    triggered = world.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    assert first_run.entered.wait(TIMEOUT)
    step_id = step_id_of(load(world, plan_id), Waiter)
    waiting = world.event(plan_id, step_id, "waiting")
    optional = world.event(plan_id, step_id, "optional", optional=True)
    settle(world, plan_id)
    assert not waiting.done()

    halted = world.halt(plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    with pytest.raises(ExecutionError, match="halted"):
        waiting.result(TIMEOUT)
    assert optional.result(TIMEOUT) is False
    first_run.open()
    assert probe.runs == [None]


def test_halt_of_a_paused_plan_with_a_suspended_step(
    make_world: MakeWorld, db_url: str, probe: Probe
) -> None:
    first = make_world(db_url)
    triggered = first.trigger(Waiter, key=probe.key)
    plan_id = triggered.execution_plan_id
    step_id = step_id_of(wait_suspended(first, probe, plan_id), Waiter)
    first.terminate()
    assert triggered.finished.result(TIMEOUT).state is PlanState.PAUSED

    second = make_world(db_url)
    halted = second.halt(plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    stored = load(second, plan_id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.steps[step_id].state is StepState.ERROR  # not left suspended
    assert "halted" in str(stored.steps[step_id].error)
    with pytest.raises(ExecutionError, match="not suspended"):
        second.event(plan_id, step_id, "late").result(TIMEOUT)
    assert probe.runs == [None]
