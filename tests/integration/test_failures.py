"""Failures on a threaded world: failed steps, resume, skip, rescue, planning errors, halt."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from dynflow import (
    Action,
    ExecutionError,
    ExecutionPlan,
    NotFound,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
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
    """Also makes steps fail on demand."""

    done: dict[str, threading.Event] = field(default_factory=dict)

    def fail(self, name: str, error: Exception) -> None:
        """The step called ``name`` raises ``error``."""

        def hook(action: Action) -> None:
            raise error

        self.hooks[name] = hook

    def fail_first_time(self, name: str) -> None:
        def hook(action: Action) -> None:
            if self.runs[name] == 1:
                raise Boom(f"{name} failed on its first run")

        self.hooks[name] = hook


BOXES: dict[str, Box] = {}


@pytest.fixture
def box() -> Iterator[Box]:
    yield from support.registered_box(Box, BOXES)


class Boom(Exception):
    """The error the failing test steps raise."""


# -- actions -------------------------------------------------------------------------


class Task(Action):
    """A run step named by its input; counts its runs and calls the test's hook."""

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        name = self.input["name"]
        with box.lock:
            box.runs[name] += 1
        self.output["name"] = name
        self.output.update(thaw(self.input.get("emit", {})))
        hook = box.hooks.get(name)
        if hook is not None:
            hook(self)
        if name in box.done:
            box.done[name].set()


class SkipTask(Task):
    rescue_strategy = Rescue.SKIP


class FailTask(Task):
    rescue_strategy = Rescue.FAIL


KINDS: dict[str, type[Task]] = {"": Task, "skip": SkipTask, "fail": FailTask}


class Tree(Action):
    """Plans tasks from a spec: ``"[kind:]name"``, ``["seq", ...]`` or ``["conc", ...]``."""

    def plan(self, key: str, spec: Any) -> None:
        self._build(key, spec)

    def _build(self, key: str, spec: Any) -> None:
        if isinstance(spec, str):
            kind, _, name = spec.rpartition(":")
            self.plan_action(KINDS[kind], key=key, name=name)
            return
        kind, *items = spec
        with self.sequence() if kind == "seq" else self.concurrence():
            for item in items:
                self._build(key, item)


class SkipScenario(Action):
    """``broken`` with a follower in sequence, two steps needing its output, a bystander."""

    def plan(self, key: str) -> None:
        with self.sequence():
            broken = self.plan_action(Task, key=key, name="broken")
            self.plan_action(Task, key=key, name="follower")
        consumer = self.plan_action(Task, key=key, name="consumer", value=broken.output["name"])
        self.plan_action(Task, key=key, name="consumer2", value=consumer.output["value"])
        self.plan_action(Task, key=key, name="bystander")


class MissingReference(Action):
    def plan(self, key: str) -> None:
        producer = self.plan_action(Task, key=key, name="producer", emit={"a": {"b": 1}})
        self.plan_action(Task, key=key, name="consumer", value=producer.output["a"]["zz"])


class FailsInPlan(Action):
    def plan(self, reason: str) -> None:
        raise Boom(reason)


class FailingChildInPlan(Action):
    def plan(self) -> None:
        self.plan_action(Task, key="unused", name="fine")
        self.plan_action(FailsInPlan, "the child cannot plan")


class NeedsName(Action):
    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        pass


class BadOutput(Action):
    def run(self, event: Any = None) -> None:
        self.output["fine"] = 1
        self.output["vm"] = {"created": datetime.now(UTC)}


class HeldThenLate(Action):
    """Held at a gate; after it, tries to write output that must be ignored."""

    def plan(self, key: str) -> None:
        with self.sequence():
            self.plan_self(key=key)
            self.plan_action(Task, key=key, name="after")

    def run(self, event: Any = None) -> None:
        box = BOXES[self.input["key"]]
        box.gates["held"].pass_through()
        self.output["late"] = True
        box.done["held"].set()


# -- helpers ---------------------------------------------------------------------------


def action_named(plan: ExecutionPlan, name: str) -> Any:
    [found] = [a for a in plan.actions if a.input.get("name") == name]
    return found


def run_step(plan: ExecutionPlan, name: str) -> Step:
    return plan.steps[action_named(plan, name).run_step_id]


def states(plan: ExecutionPlan, *names: str) -> dict[str, StepState]:
    return {name: run_step(plan, name).state for name in names}


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def finish(future: Any) -> ExecutionPlan:
    plan: ExecutionPlan = future.result(TIMEOUT)
    return plan


def outcome(plan: ExecutionPlan) -> tuple[PlanState, PlanResult]:
    return plan.state, plan.result


# -- a failing step ----------------------------------------------------------------------


def test_failing_step_records_class_message_and_backtrace(world: World, box: Box) -> None:
    box.fail("broken", Boom("disk is full"))

    plan = finish(world.trigger(Tree, box.key, ["conc", "broken", "fine"]).finished)

    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    stored = load(world, plan.id)
    assert outcome(stored) == (PlanState.PAUSED, PlanResult.ERROR)
    step = run_step(stored, "broken")
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class == f"{__name__}.Boom"
    assert step.error.message == "disk is full"
    backtrace = "\n".join(step.error.backtrace)
    assert "Traceback" in backtrace
    assert "raise error" in backtrace
    assert backtrace.rstrip().endswith("disk is full")
    assert stored.errors == [step.error]
    assert run_step(stored, "fine").state is StepState.SUCCESS
    assert step.ended_at is not None


def test_running_steps_finish_and_no_new_step_starts_after_a_failure(
    world: World, box: Box
) -> None:
    box.fail("broken", Boom("broken"))
    held = box.gate("held")
    spec = ["conc", ["seq", "broken", "after_broken"], ["seq", "held", "after_held"]]
    triggered = world.trigger(Tree, box.key, spec)
    assert held.entered.wait(TIMEOUT)

    def broken_failed() -> bool:
        return run_step(load(world, triggered.execution_plan_id), "broken").state == "error"

    eventually(broken_failed)
    # the plan waits for the step still running
    assert load(world, triggered.execution_plan_id).state is PlanState.RUNNING
    assert not triggered.finished.done()
    held.open()

    plan = finish(triggered.finished)
    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    stored = load(world, plan.id)
    assert states(stored, "broken", "held", "after_broken", "after_held") == {
        "broken": StepState.ERROR,
        "held": StepState.SUCCESS,
        "after_broken": StepState.PENDING,
        "after_held": StepState.PENDING,
    }
    assert box.runs == {"broken": 1, "held": 1}
    assert [e.name for e in stored.execution_history] == ["start execution", "pause execution"]


def test_resume_reruns_only_the_failed_steps(world: World, box: Box) -> None:
    box.fail_first_time("flaky")
    spec = ["conc", ["seq", "ok1", "flaky", "after"], "ok2"]

    paused = finish(world.trigger(Tree, box.key, spec).finished)
    assert outcome(paused) == (PlanState.PAUSED, PlanResult.ERROR)
    assert box.runs == {"ok1": 1, "flaky": 1, "ok2": 1}

    plan = finish(world.resume(paused.id))

    assert outcome(plan) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert box.runs == {"ok1": 1, "flaky": 2, "ok2": 1, "after": 1}
    stored = load(world, plan.id)
    assert stored.errors == []
    assert run_step(stored, "flaky").error is None
    assert [e.name for e in stored.execution_history] == [
        "start execution",
        "pause execution",
        "start execution",
        "finish execution",
    ]


# -- skip ----------------------------------------------------------------------------------


def test_skip_marks_the_step_and_its_output_consumers_then_resume_ends_warning(
    world: World, box: Box
) -> None:
    box.fail("broken", Boom("broken"))
    paused = finish(world.trigger(SkipScenario, box.key).finished)
    assert outcome(paused) == (PlanState.PAUSED, PlanResult.ERROR)
    broken = run_step(paused, "broken")

    skipped = world.skip(paused.id, broken.id)

    names = ("broken", "consumer", "consumer2", "follower", "bystander")
    assert states(skipped, *names) == {
        "broken": StepState.SKIPPED,
        "consumer": StepState.SKIPPED,
        "consumer2": StepState.SKIPPED,
        "follower": StepState.PENDING,
        "bystander": StepState.SUCCESS,
    }
    assert outcome(load(world, paused.id)) == (PlanState.PAUSED, PlanResult.ERROR)

    plan = finish(world.resume(paused.id))

    assert outcome(plan) == (PlanState.STOPPED, PlanResult.WARNING)
    stored = load(world, plan.id)
    assert states(stored, *names) == {
        "broken": StepState.SKIPPED,
        "consumer": StepState.SKIPPED,
        "consumer2": StepState.SKIPPED,
        "follower": StepState.SUCCESS,
        "bystander": StepState.SUCCESS,
    }
    assert box.runs == {"broken": 1, "bystander": 1, "follower": 1}


def test_skip_refuses_a_step_that_did_not_fail(world: World, box: Box) -> None:
    box.fail("broken", Boom("broken"))
    paused = finish(world.trigger(SkipScenario, box.key).finished)
    bystander = run_step(paused, "bystander")
    pending = run_step(paused, "follower")

    with pytest.raises(ExecutionError, match="only a failed step can be skipped"):
        world.skip(paused.id, bystander.id)
    with pytest.raises(ExecutionError, match="only a failed step can be skipped"):
        world.skip(paused.id, pending.id)
    with pytest.raises(NotFound, match="999"):
        world.skip(paused.id, 999)

    # nothing changed, and the plan is still usable
    assert states(load(world, paused.id), "bystander", "follower") == {
        "bystander": StepState.SUCCESS,
        "follower": StepState.PENDING,
    }
    world.skip(paused.id, run_step(paused, "broken").id)
    assert outcome(finish(world.resume(paused.id))) == (PlanState.STOPPED, PlanResult.WARNING)


def test_skip_refuses_a_plan_that_is_not_paused(world: World, box: Box) -> None:
    box.fail("broken", Boom("broken"))
    stopped = finish(world.trigger(Tree, box.key, ["conc", "fail:broken", "fine"]).finished)
    assert outcome(stopped) == (PlanState.STOPPED, PlanResult.ERROR)

    with pytest.raises(ExecutionError, match="paused"):
        world.skip(stopped.id, run_step(stopped, "broken").id)
    assert run_step(load(world, stopped.id), "broken").state is StepState.ERROR

    held = box.gate("held")
    triggered = world.trigger(Tree, box.key, "held")
    assert held.entered.wait(TIMEOUT)
    with pytest.raises(ExecutionError, match="running"):
        world.skip(
            triggered.execution_plan_id,
            run_step(load(world, triggered.execution_plan_id), "held").id,
        )
    held.open()
    assert outcome(finish(triggered.finished)) == (PlanState.STOPPED, PlanResult.SUCCESS)


# -- rescue strategies ----------------------------------------------------------------------


def test_auto_rescue_all_skip_continues_and_ends_warning(world: World, box: Box) -> None:
    box.fail("s1", Boom("s1"))
    box.fail("s2", Boom("s2"))
    spec = ["conc", ["seq", "skip:s1", "after"], "skip:s2", "fine"]

    plan = finish(world.trigger(Tree, box.key, spec).finished)

    assert outcome(plan) == (PlanState.STOPPED, PlanResult.WARNING)
    stored = load(world, plan.id)
    assert states(stored, "s1", "s2", "after", "fine") == {
        "s1": StepState.SKIPPED,
        "s2": StepState.SKIPPED,
        "after": StepState.SUCCESS,
        "fine": StepState.SUCCESS,
    }
    assert box.runs == {"s1": 1, "s2": 1, "after": 1, "fine": 1}


def test_auto_rescue_all_fail_stops_the_plan(world: World, box: Box) -> None:
    box.fail("f1", Boom("f1"))
    box.fail("f2", Boom("f2"))
    spec = ["conc", ["seq", "fail:f1", "after"], "fail:f2"]

    plan = finish(world.trigger(Tree, box.key, spec).finished)

    assert outcome(plan) == (PlanState.STOPPED, PlanResult.ERROR)
    stored = load(world, plan.id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    assert states(stored, "f1", "f2", "after") == {
        "f1": StepState.ERROR,
        "f2": StepState.ERROR,
        "after": StepState.PENDING,
    }
    assert stored.execution_history[-1].name == "finish execution"
    with pytest.raises(ExecutionError, match="stopped"):
        world.resume(plan.id).result(TIMEOUT)


def test_auto_rescue_mixed_strategies_pause(world: World, box: Box) -> None:
    box.fail("s", Boom("s"))
    box.fail("f", Boom("f"))

    plan = finish(world.trigger(Tree, box.key, ["conc", "skip:s", "fail:f"]).finished)

    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    assert states(load(world, plan.id), "s", "f") == {"s": StepState.ERROR, "f": StepState.ERROR}


@pytest.mark.parametrize("kind", ["skip", "fail"])
def test_without_auto_rescue_a_failure_always_pauses(
    db_url: str, make_world: MakeWorld, box: Box, kind: str
) -> None:
    world = make_world(db_url, auto_rescue=False)
    box.fail("broken", Boom("broken"))

    plan = finish(world.trigger(Tree, box.key, ["seq", f"{kind}:broken", "after"]).finished)

    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    assert states(load(world, plan.id), "broken", "after") == {
        "broken": StepState.ERROR,
        "after": StepState.PENDING,
    }


# -- planning failures ------------------------------------------------------------------------


def test_exception_in_plan_fails_planning_and_keeps_the_plan(world: World) -> None:
    with pytest.raises(PlanningFailed, match="no network left") as failed:
        world.trigger(FailsInPlan, "no network left")

    stored = load(world, failed.value.execution_plan_id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.entry_action.plan_step_id is not None
    step = stored.steps[stored.entry_action.plan_step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class == f"{__name__}.Boom"
    assert step.error.message == "no network left"
    assert step.error.backtrace


def test_exception_in_a_child_plan_fails_planning_on_the_child_step(world: World) -> None:
    with pytest.raises(PlanningFailed, match="the child cannot plan") as failed:
        world.plan(FailingChildInPlan)

    stored = load(world, failed.value.execution_plan_id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    child = next(a for a in stored.actions if a.action_class == FailsInPlan.class_name())
    [error] = stored.errors
    assert child.plan_step_id is not None
    assert stored.steps[child.plan_step_id].error == error
    assert error.message == "the child cannot plan"
    assert stored.entry_action.plan_step_id is not None
    assert stored.steps[stored.entry_action.plan_step_id].state is StepState.ERROR
    assert all(s.state is not StepState.RUNNING for s in stored.steps.values())


def test_wrong_arguments_to_plan_fail_planning(world: World) -> None:
    with pytest.raises(PlanningFailed, match="name") as failed:
        world.trigger(NeedsName)

    stored = load(world, failed.value.execution_plan_id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.entry_action.plan_step_id is not None
    error = stored.steps[stored.entry_action.plan_step_id].error
    assert error is not None
    assert error.exception_class == "TypeError"
    assert "name" in error.message
    # nothing ran: the run step was never planned
    assert [s.phase for s in stored.steps.values()] == ["plan"]


# -- errors found while running -------------------------------------------------------------


def test_non_json_output_fails_the_step_naming_the_action_and_key(world: World) -> None:
    plan = finish(world.trigger(BadOutput).finished)

    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    stored = load(world, plan.id)
    [error] = stored.errors
    assert error.exception_class == "dynflow.errors.NotSerializable"
    assert "BadOutput" in error.message
    assert "['vm']['created']" in error.message
    assert "datetime" in error.message
    assert stored.entry_action.output == {}  # nothing of the failed run is kept


def test_reference_to_a_missing_key_fails_the_referencing_step(world: World, box: Box) -> None:
    plan = finish(world.trigger(MissingReference, box.key).finished)

    assert outcome(plan) == (PlanState.PAUSED, PlanResult.ERROR)
    stored = load(world, plan.id)
    assert states(stored, "producer", "consumer") == {
        "producer": StepState.SUCCESS,
        "consumer": StepState.ERROR,
    }
    error = run_step(stored, "consumer").error
    assert error is not None
    assert "output reference" in error.message
    assert "['a']['zz']" in error.message
    assert box.runs == {"producer": 1}


# -- halt ------------------------------------------------------------------------------------


def test_halt_stops_a_running_plan_at_once_and_ignores_the_late_result(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    world = make_world(db_url, pool_size=1)
    held = box.gates["held"] = Gate()
    box.done["held"] = threading.Event()
    triggered = world.trigger(HeldThenLate, box.key)
    assert held.entered.wait(TIMEOUT)

    halted = finish(world.halt(triggered.execution_plan_id))

    assert outcome(halted) == (PlanState.STOPPED, PlanResult.ERROR)
    assert outcome(finish(triggered.finished)) == (PlanState.STOPPED, PlanResult.ERROR)
    assert not box.done["held"].is_set()  # it stopped while the step was still held
    held.open()
    assert box.done["held"].wait(TIMEOUT)
    # the single worker runs another plan only after the held step's result was handed back
    assert outcome(finish(world.trigger(Tree, box.key, "next").finished)) == (
        PlanState.STOPPED,
        PlanResult.SUCCESS,
    )

    stored = load(world, triggered.execution_plan_id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.entry_action.run_step_id is not None
    step = stored.steps[stored.entry_action.run_step_id]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert "halt" in step.error.message
    assert "late" not in stored.entry_action.output
    assert run_step(stored, "after").state is StepState.PENDING
    assert box.runs == {"next": 1}
    assert "halt execution" in [e.name for e in stored.execution_history]


def test_halt_stops_a_paused_plan(world: World, box: Box) -> None:
    box.fail("broken", Boom("broken"))
    paused = finish(world.trigger(Tree, box.key, ["seq", "broken", "after"]).finished)
    assert outcome(paused) == (PlanState.PAUSED, PlanResult.ERROR)

    halted = finish(world.halt(paused.id))

    assert outcome(halted) == (PlanState.STOPPED, PlanResult.ERROR)
    stored = load(world, paused.id)
    assert outcome(stored) == (PlanState.STOPPED, PlanResult.ERROR)
    assert stored.execution_history[-1].name == "halt execution"
    assert stored.ended_at is not None
    with pytest.raises(ExecutionError, match="stopped"):
        world.resume(paused.id).result(TIMEOUT)
    assert box.runs == {"broken": 1}


class RecordsThenFails(Action):
    def run(self, event: object = None) -> None:
        self.output["task_id"] = "remote-42"
        raise RuntimeError("remote task failed")


def test_output_written_before_a_failure_is_kept(world: World) -> None:
    plan = world.trigger(RecordsThenFails).finished.result(timeout=10)
    assert (plan.state, plan.result) == ("paused", "error")
    stored = world.persistence.load_execution_plan(plan.id)
    assert stored.entry_action.output == {"task_id": "remote-42"}
