"""Execution semantics on a threaded world: flows, references, phases, queues, bookkeeping."""

from __future__ import annotations

import asyncio
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field

from dynflow import (
    Action,
    ExecutionError,
    ExecutionPlan,
    PlanningFailed,
    PlanResult,
    PlanState,
    Step,
    StepState,
    World,
)
from tests import support
from tests.support import Gate, eventually, thaw

MakeWorld = Callable[..., World]
TIMEOUT = 10


# -- shared state between a test and the actions it runs -----------------------------


@dataclass
class Box(support.Box):
    """Also logs what the steps do and what input they saw."""

    log: list[tuple[str, str]] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def note(self, event: str, name: str) -> None:
        with self.lock:
            self.log.append((event, name))


BOXES: dict[str, Box] = {}


@pytest.fixture
def box() -> Iterator[Box]:
    yield from support.registered_box(Box, BOXES)


# -- actions -------------------------------------------------------------------------


class Task(Action):
    """A run step named by its input; reports to the test's box and calls its hook."""

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        name = self.input["name"]
        with box.lock:
            box.runs[name] += 1
        box.seen[name] = thaw(self.input)
        box.note("start", name)
        self.output["name"] = name
        self.output.update(thaw(self.input.get("emit", {})))
        hook = box.hooks.get(name)
        if hook is not None:
            hook(self)
        box.note("end", name)


class Tree(Action):
    """Plans Tasks from a spec: ``"name"``, ``["seq", ...]`` or ``["conc", ...]``."""

    def plan(self, key: str, spec: Any) -> None:
        self._build(key, spec)

    def _build(self, key: str, spec: Any) -> None:
        if isinstance(spec, str):
            self.plan_action(Task, key=key, name=spec)
            return
        kind, *items = spec
        with self.sequence() if kind == "seq" else self.concurrence():
            for item in items:
                self._build(key, item)


class WithReferences(Action):
    """A consumer planned concurrently with the producer whose output it references."""

    def plan(self, key: str) -> None:
        producer = self.plan_action(
            Task, key=key, name="producer", emit={"a": {"b": 42}, "c": ["x", "y"]}
        )
        self.plan_action(
            Task,
            key=key,
            name="consumer",
            value=producer.output["a"]["b"],
            item=producer.output["c"][1],
            whole=producer.output,
        )
        self.plan_action(Task, key=key, name="bystander")


class Release(Action):
    """Produces a version in run; its finalize (which runs first) moves it on."""

    def run(self, event: Any = None) -> None:
        self.output["version"] = "1.0"

    def finalize(self) -> None:
        self.output["version"] = "2.0"


class Announce(Action):
    """References the release's version; reports what run and finalize saw."""

    def plan(self, key: str, version: Any) -> None:
        self.plan_self(key=key, version=version)

    def run(self, event: Any = None) -> None:
        BOXES[self.input["key"]].seen["run"] = self.input["version"]

    def finalize(self) -> None:
        BOXES[self.input["key"]].seen["finalize"] = self.input["version"]


class ReleaseAndAnnounce(Action):
    def plan(self, key: str) -> None:
        release = self.plan_action(Release)
        self.plan_action(Announce, key, release.output["version"])


class Triage(Action):
    """Passes its own future output to a child planned before its own run step."""

    def plan(self, key: str) -> None:
        self.plan_action(
            Task, key=key, name="notify", triage=self.output, level=self.output["level"]
        )
        self.plan_self(key=key, name="triage")

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        box.note("start", "triage")
        box.gates["triage"].pass_through()
        self.output["level"] = "high"
        box.note("end", "triage")


class MutatesInput(Action):
    def run(self, event: Any = None) -> None:
        attempts: dict[str, Callable[[], object]] = {
            "set": lambda: operator.setitem(self.input, "name", "changed"),
            "delete": lambda: operator.delitem(self.input, "name"),
            "nested": lambda: operator.setitem(self.input["nested"], "k", "changed"),
            "list": lambda: operator.setitem(self.input["items"], 0, "changed"),
        }
        for what, attempt in attempts.items():
            try:
                attempt()
            except TypeError:
                self.output[what] = "TypeError"
            else:
                self.output[what] = "mutated"
        self.output["input"] = thaw(self.input)


class RaisesOnInputWrite(Action):
    def run(self, event: Any = None) -> None:
        self.input["name"] = "changed"


class Parent(Action):
    """Own run step plus two children; each writes its output."""

    def plan(self, size: int) -> None:
        self.plan_self(size=size)
        self.plan_action(Child, index=1)
        self.plan_action(Child, index=2)

    def run(self, event: Any = None) -> None:
        self.output["vms"] = [f"vm-{i}" for i in range(self.input["size"])]
        self.output["meta"] = {"ok": True, "ratio": 0.5, "none": None}


class Child(Action):
    def run(self, event: Any = None) -> None:
        self.output["square"] = self.input["index"] ** 2


class Finalizing(Action):
    """Runs and finalizes; plans its children (``[name, [children...]]``) after itself."""

    def plan(self, key: str, name: str, children: Sequence[Any] = ()) -> None:
        self.plan_self(key=key, name=name)
        for child_name, grandchildren in children:
            self.plan_action(Finalizing, key=key, name=child_name, children=grandchildren)

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        box.note("run", self.input["name"])
        self.output["ran"] = self.input["name"]

    def finalize(self) -> None:
        box = BOXES[self.input["key"]]
        name = self.input["name"]
        box.note("finalize-start", name)
        box.seen[name] = dict(self.output)
        self.output["finalized"] = True
        box.note("finalize-end", name)


class AsyncWaiter(Action):
    async def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        woken = asyncio.Event()
        box.extra["loop"] = asyncio.get_running_loop()
        box.extra["event"] = woken
        box.extra["registered"].set()
        await asyncio.wait_for(woken.wait(), 5)
        self.output["woken"] = True


class SyncWaker(Action):
    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        if not box.extra["registered"].wait(5):
            raise TimeoutError("the async step never started")
        box.extra["loop"].call_soon_threadsafe(box.extra["event"].set)
        self.output["thread"] = threading.current_thread().name


class AsyncAndSync(Action):
    def plan(self, key: str) -> None:
        self.plan_action(AsyncWaiter, key=key)
        self.plan_action(SyncWaker, key=key)


class SlowQueueTask(Action):
    queue = "slow"

    def run(self, event: Any = None) -> None:
        self.output["thread"] = threading.current_thread().name


class VMInput(BaseModel):
    name: str
    cpus: int = 2
    tags: list[str] = Field(default_factory=list)


class TypedAction(Action):
    Input = VMInput

    def run(self, event: Any = None) -> None:
        self.output["cpus"] = self.input["cpus"]
        self.output["tags"] = list(self.input["tags"])


class Reporting(Action):
    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        self.report_progress(0.25)
        box.gates["reporting"].pass_through()
        self.report_progress(0.75)


class ProvisionFleet(Action):
    label = "Provision the fleet"

    def plan(self) -> None:
        self.plan_action(CreateVirtualMachine)


class CreateVirtualMachine(Action):
    def run(self, event: Any = None) -> None:
        pass


# -- helpers ---------------------------------------------------------------------------


def action_named(plan: ExecutionPlan, name: str) -> Any:
    [found] = [a for a in plan.actions if a.input.get("name") == name]
    return found


def run_step(plan: ExecutionPlan, name: str) -> Step:
    return plan.steps[action_named(plan, name).run_step_id]


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def position(box: Box, event: str, name: str) -> int:
    return box.log.index((event, name))


def finish(future: Any) -> ExecutionPlan:
    plan: ExecutionPlan = future.result(TIMEOUT)
    return plan


# -- flows -----------------------------------------------------------------------------


def test_sequence_runs_its_steps_one_after_the_other(world: World, box: Box) -> None:
    first = box.gate("first")
    triggered = world.trigger(Tree, box.key, ["seq", "first", "second", "third"])
    assert first.entered.wait(TIMEOUT)
    held = load(world, triggered.execution_plan_id)
    assert run_step(held, "first").state is StepState.RUNNING
    assert run_step(held, "second").state is StepState.PENDING
    assert run_step(held, "third").state is StepState.PENDING
    assert box.runs["second"] == 0
    first.open()

    plan = finish(triggered.finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert box.log == [
        ("start", "first"),
        ("end", "first"),
        ("start", "second"),
        ("end", "second"),
        ("start", "third"),
        ("end", "third"),
    ]


def test_concurrence_lets_its_steps_overlap(world: World, box: Box) -> None:
    barrier = threading.Barrier(2, timeout=5)
    box.hooks["left"] = box.hooks["right"] = lambda action: barrier.wait()

    plan = finish(world.trigger(Tree, box.key, ["conc", "left", "right"]).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    assert not barrier.broken
    # both started before either ended: they ran at the same time
    assert {e for e, _ in box.log[:2]} == {"start"}


def test_nested_sequences_and_concurrences(world: World, box: Box) -> None:
    # a, then (b1 -> b2 alongside c1 -> c2), then d; b2 and c1 must overlap
    barrier = threading.Barrier(2, timeout=5)
    box.hooks["b2"] = box.hooks["c1"] = lambda action: barrier.wait()
    spec = ["seq", "a", ["conc", ["seq", "b1", "b2"], ["seq", "c1", "c2"]], "d"]

    plan = finish(world.trigger(Tree, box.key, spec).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    assert not barrier.broken
    at = lambda event, name: position(box, event, name)  # noqa: E731
    for name in ("b1", "b2", "c1", "c2"):
        assert at("end", "a") < at("start", name) < at("end", name) < at("start", "d")
    assert at("end", "b1") < at("start", "b2")
    assert at("end", "c1") < at("start", "c2")
    assert sorted(box.runs.values()) == [1] * 6


# -- output references -----------------------------------------------------------------


def test_output_references_resolve_at_run_time_and_order_the_steps(world: World, box: Box) -> None:
    producer = box.gate("producer")
    triggered = world.trigger(WithReferences, box.key)
    assert producer.entered.wait(TIMEOUT)
    # the consumer is in the same concurrence, yet waits for the producer it references
    eventually(lambda: box.runs["bystander"] == 1)
    held = load(world, triggered.execution_plan_id)
    assert run_step(held, "consumer").state is StepState.PENDING
    assert box.runs["consumer"] == 0
    producer.open()

    plan = finish(triggered.finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    assert position(box, "end", "producer") < position(box, "start", "consumer")
    seen = box.seen["consumer"]
    assert seen["value"] == 42
    assert seen["item"] == "y"
    assert seen["whole"] == {
        "name": "producer",
        "a": {"b": 42},
        "c": ["x", "y"],
    }


def test_a_step_that_ran_keeps_the_resolved_input(world: World, box: Box) -> None:
    plan = finish(world.trigger(ReleaseAndAnnounce, box.key).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    # finalize sees what run saw, though the referenced output changed meanwhile
    assert box.seen == {"run": "1.0", "finalize": "1.0"}
    stored = load(world, plan.id)
    assert stored.action(2).output == {"version": "2.0"}
    # the stored input shows what the step ran with, not the reference
    assert stored.action(3).input == {"key": box.key, "version": "1.0"}


def test_own_output_passed_to_a_child_while_planning(world: World, box: Box) -> None:
    triage = box.gates["triage"] = Gate()
    triggered = world.trigger(Triage, box.key)
    assert triage.entered.wait(TIMEOUT)
    held = load(world, triggered.execution_plan_id)
    assert run_step(held, "notify").state is StepState.PENDING
    triage.open()

    plan = finish(triggered.finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    assert position(box, "end", "triage") < position(box, "start", "notify")
    assert box.seen["notify"]["triage"] == {"level": "high"}
    assert box.seen["notify"]["level"] == "high"


# -- input and output ------------------------------------------------------------------


def test_input_is_read_only_in_run(world: World) -> None:
    given = {"name": "web", "nested": {"k": "v"}, "items": ["a", "b"]}
    plan = finish(world.trigger(MutatesInput, given).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    output = load(world, plan.id).entry_action.output
    assert {k: output[k] for k in ("set", "delete", "nested", "list")} == dict.fromkeys(
        ("set", "delete", "nested", "list"), "TypeError"
    )
    assert output["input"] == given
    assert load(world, plan.id).entry_action.input == given


def test_writing_the_input_in_run_fails_the_step_with_type_error(world: World) -> None:
    plan = finish(world.trigger(RaisesOnInputWrite, name="web").finished)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [error] = load(world, plan.id).errors
    assert error.exception_class == "TypeError"


def test_outputs_are_persisted_and_visible_on_the_plan(world: World) -> None:
    finished = finish(world.trigger(Parent, size=2).finished)
    assert (finished.state, finished.result) == (PlanState.STOPPED, PlanResult.SUCCESS)

    for plan in (finished, load(world, finished.id)):
        assert plan.entry_action.action_class == Parent.class_name()
        assert plan.entry_action.input == {"size": 2}
        assert plan.entry_action.output == {
            "vms": ["vm-0", "vm-1"],
            "meta": {"ok": True, "ratio": 0.5, "none": None},
        }
        children = [a for a in plan.actions if a.action_class == Child.class_name()]
        assert [(a.input, a.output) for a in children] == [
            ({"index": 1}, {"square": 1}),
            ({"index": 2}, {"square": 4}),
        ]
        assert all(a.parent_action_id == plan.entry_action.id for a in children)


def test_finalize_runs_after_every_run_step_in_planning_order(world: World, box: Box) -> None:
    children = [["a", [["a1", []], ["a2", []]]], ["b", []]]
    plan = finish(world.trigger(Finalizing, box.key, "root", children).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    names = ["root", "a", "a1", "a2", "b"]
    runs = [entry for entry in box.log if entry[0] == "run"]
    finalizes = box.log[len(runs) :]
    assert sorted(name for _, name in runs) == sorted(names)
    # every run before any finalize; finalizes one at a time, in planning order
    assert finalizes == [
        entry for name in names for entry in [("finalize-start", name), ("finalize-end", name)]
    ]
    assert box.seen["a1"] == {"ran": "a1"}  # finalize sees the run's output
    stored = load(world, plan.id)
    assert all(a.output == {"ran": a.input["name"], "finalized": True} for a in stored.actions)
    assert all(s.state is StepState.SUCCESS for s in stored.steps.values())


# -- async steps and queues -------------------------------------------------------------


def test_async_run_does_not_occupy_a_worker(db_url: str, make_world: MakeWorld, box: Box) -> None:
    world = make_world(db_url, pool_size=1)
    box.extra["registered"] = threading.Event()

    plan = finish(world.trigger(AsyncAndSync, box.key).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    outputs = {a.action_class: a.output for a in load(world, plan.id).actions}
    assert outputs[AsyncWaiter.class_name()] == {"woken": True}
    assert "default" in outputs[SyncWaker.class_name()]["thread"]


def test_action_runs_on_its_named_queue(db_url: str, make_world: MakeWorld) -> None:
    world = make_world(db_url, queues={"slow": 1})

    plan = finish(world.trigger(SlowQueueTask).finished)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    stored = load(world, plan.id)
    assert stored.entry_action.run_step_id is not None
    assert stored.steps[stored.entry_action.run_step_id].queue == "slow"
    assert "slow" in stored.entry_action.output["thread"]


def test_action_on_a_queue_the_world_lacks_fails_naming_the_queue(world: World) -> None:
    plan = finish(world.trigger(SlowQueueTask).finished)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [error] = load(world, plan.id).errors
    assert "'slow'" in error.message
    assert "queue" in error.message


# -- typed input -------------------------------------------------------------------------


def test_input_model_applies_defaults_and_coerces_at_plan_time(world: World) -> None:
    planned = world.plan(TypedAction, name="web", cpus="4")
    assert planned.entry_action.input == {"name": "web", "cpus": 4, "tags": []}

    plan = finish(world.trigger(TypedAction, name="db").finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS), plan.errors
    stored = load(world, plan.id)
    assert stored.entry_action.input == {"name": "db", "cpus": 2, "tags": []}
    assert stored.entry_action.output == {"cpus": 2, "tags": []}


def test_invalid_input_fails_planning_with_the_validation_message(world: World) -> None:
    with pytest.raises(PlanningFailed) as failed:
        world.trigger(TypedAction, name="web", cpus="many")

    message = str(failed.value)
    assert "cpus" in message
    assert "valid integer" in message
    stored = load(world, failed.value.execution_plan_id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert any("cpus" in error.message for error in stored.errors)


# -- plan, then execute -------------------------------------------------------------------


def test_plan_then_execute(world: World, box: Box) -> None:
    planned = world.plan(Tree, box.key, ["seq", "one", "two"])
    assert (planned.state, planned.result) == (PlanState.PLANNED, PlanResult.PENDING)
    stored = load(world, planned.id)
    assert (stored.state, stored.result) == (PlanState.PLANNED, PlanResult.PENDING)
    assert {s.state for s in stored.steps.values() if s.phase == "run"} == {StepState.PENDING}
    assert box.runs == {}

    plan = finish(world.execute(planned.id))

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert box.runs == {"one": 1, "two": 1}
    assert load(world, planned.id).state is PlanState.STOPPED


def test_executing_a_stopped_plan_fails(world: World, box: Box) -> None:
    plan = finish(world.trigger(Tree, box.key, "only").finished)
    assert plan.state is PlanState.STOPPED

    future = world.execute(plan.id)

    with pytest.raises(ExecutionError, match="stopped"):
        future.result(TIMEOUT)
    assert box.runs["only"] == 1
    assert load(world, plan.id).result is PlanResult.SUCCESS


def test_executing_a_running_plan_fails(world: World, box: Box) -> None:
    gate = box.gate("only")
    triggered = world.trigger(Tree, box.key, "only")
    assert gate.entered.wait(TIMEOUT)

    future = world.execute(triggered.execution_plan_id)

    with pytest.raises(ExecutionError, match="running"):
        future.result(TIMEOUT)
    gate.open()
    plan = finish(triggered.finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert box.runs["only"] == 1


# -- bookkeeping ---------------------------------------------------------------------------


def test_execution_history_records_start_and_finish(world: World, box: Box) -> None:
    plan = finish(world.trigger(Tree, box.key, "only").finished)

    history = load(world, plan.id).execution_history
    assert [(entry.name, entry.world_id) for entry in history] == [
        ("start execution", world.id),
        ("finish execution", world.id),
    ]
    assert history[0].time <= history[1].time


def test_progress_is_reported_and_complete_at_success(world: World, box: Box) -> None:
    gate = box.gates["reporting"] = Gate()
    triggered = world.trigger(Reporting, key=box.key)
    assert gate.entered.wait(TIMEOUT)

    def reported() -> bool:
        plan = load(world, triggered.execution_plan_id)
        assert plan.entry_action.run_step_id is not None
        step = plan.steps[plan.entry_action.run_step_id]
        return step.progress_done == 0.25 and plan.progress == 0.25

    eventually(reported)
    gate.open()

    plan = finish(triggered.finished)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    stored = load(world, plan.id)
    assert stored.progress == 1.0
    assert stored.entry_action.run_step_id is not None
    assert stored.steps[stored.entry_action.run_step_id].progress_done == 1.0


def test_times_are_recorded(world: World, box: Box) -> None:
    plan = load(world, finish(world.trigger(Tree, box.key, ["seq", "a", "b"]).finished).id)

    assert plan.started_at is not None
    assert plan.ended_at is not None
    assert plan.started_at.utcoffset() == timedelta(0)
    assert plan.started_at <= plan.ended_at
    assert plan.real_time > 0
    assert plan.execution_time > 0
    assert plan.execution_time == pytest.approx(sum(s.execution_time for s in plan.steps.values()))
    for name in ("a", "b"):
        step = run_step(plan, name)
        assert step.started_at is not None
        assert step.ended_at is not None
        assert plan.started_at <= step.started_at <= step.ended_at <= plan.ended_at
        assert step.execution_time > 0
        assert step.real_time >= 0
    a_ended, b_started = run_step(plan, "a").ended_at, run_step(plan, "b").started_at
    assert a_ended is not None
    assert b_started is not None
    assert a_ended <= b_started


def wall_time(plan: ExecutionPlan, until: datetime) -> float:
    assert plan.started_at is not None
    return (until - plan.started_at).total_seconds()


def test_real_time_is_wall_time_paused_time_included(world: World, box: Box) -> None:
    def fail_first(action: Action) -> None:
        if box.runs["a"] == 1:
            raise RuntimeError("first run fails")

    box.hooks["a"] = fail_first
    paused = finish(world.trigger(Tree, box.key, ["seq", "a", "b"]).finished)
    assert paused.state is PlanState.PAUSED
    pause = paused.execution_history[-1]
    assert pause.name == "pause execution"
    # a paused plan keeps its wall time until the pause
    assert paused.real_time == pytest.approx(wall_time(paused, pause.time), abs=0.05)
    # the paused time is part of the wall time once the plan runs again
    eventually(lambda: datetime.now(UTC) - pause.time > timedelta(seconds=0.5))

    done = load(world, finish(world.resume(paused.id)).id)

    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.ended_at is not None
    assert done.real_time == pytest.approx(wall_time(done, done.ended_at), abs=1e-6)
    assert done.real_time > 0.5


def test_real_time_of_a_running_plan_is_time_since_it_started(world: World, box: Box) -> None:
    gate = box.gate("a")
    triggered = world.trigger(Tree, box.key, ["seq", "a"])
    assert gate.entered.wait(TIMEOUT)

    before = datetime.now(UTC)
    running = load(world, triggered.execution_plan_id)
    after = datetime.now(UTC)

    assert running.state is PlanState.RUNNING
    assert wall_time(running, before) <= running.real_time <= wall_time(running, after)
    gate.open()
    finish(triggered.finished)


def test_labels(world: World) -> None:
    plan = finish(world.trigger(ProvisionFleet).finished)

    assert plan.label == "Provision the fleet"
    stored = load(world, plan.id)
    assert stored.label == "Provision the fleet"
    assert [a.label for a in stored.actions] == ["Provision the fleet", "Create Virtual Machine"]
    found = world.persistence.find_execution_plans(filters={"label": "Provision the fleet"})
    assert [p.id for p in found] == [plan.id]
