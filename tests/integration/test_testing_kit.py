"""The testing kit users rely on: unit helpers for one action, InThreadWorld, the fixture."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynflow import Action, PlanResult, PlanState, Polling, StepState
from dynflow.action.events import POLL
from dynflow.testing import (
    InThreadWorld,
    ManualClock,
    UnitWorld,
    assert_action_planned,
    assert_action_planned_with,
    assert_run_phase,
    create_action,
    finalize_action,
    plan_action,
    planned_actions,
    run_action,
)

pytest_plugins = ["pytester"]

#: children's plan() calls: the kit must record children without planning them
CHILD_PLANS: list[str] = []
FINALIZED: list[str] = []


class CreateNetwork(Action):
    def plan(self, name: str) -> None:
        CHILD_PLANS.append(name)
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        self.output["id"] = f"net-{self.input['name']}"


class CreateDisk(Action):
    def plan(self, size: int, *, fast: bool = False) -> None:
        CHILD_PLANS.append(f"disk-{size}")
        self.plan_self(size=size, fast=fast)


class CreateVM(Action):
    def plan(self, name: str, size: int = 10) -> None:
        network = self.plan_action(CreateNetwork, f"{name}-net")
        self.plan_action(CreateDisk, size, fast=True)
        self.plan_self(name=name, network_id=network.output["id"])

    def run(self, event: Any = None) -> None:
        self.output["vm"] = f"{self.input['name']}@{self.input['network_id']}"
        if event is not None:
            self.output["event"] = event

    def finalize(self) -> None:
        FINALIZED.append(self.output["vm"])


class OnlyChildren(Action):
    def plan(self) -> None:
        self.plan_action(CreateDisk, 1)


class RecordsThread(Action):
    def plan(self, count: int) -> None:
        with self.sequence():
            for index in range(count):
                self.plan_action(ThreadStep, index=index)


class ThreadStep(Action):
    def run(self, event: Any = None) -> None:
        self.output["thread"] = threading.get_ident()


class Failing(Action):
    def run(self, event: Any = None) -> None:
        raise ValueError("no capacity")


@pytest.fixture(autouse=True)
def _clean() -> None:
    CHILD_PLANS.clear()
    FINALIZED.clear()
    REGISTERED.clear()


# -- unit helpers -----------------------------------------------------------------------


def test_plan_action_records_children_without_planning_them() -> None:
    action = create_action(CreateVM)

    assert plan_action(action, "web-1", size=20) is action

    assert CHILD_PLANS == []
    children = planned_actions(action)
    assert [c.action_class for c in children] == [CreateNetwork, CreateDisk]
    assert (children[0].args, children[0].kwargs) == (("web-1-net",), {})
    assert (children[1].args, children[1].kwargs) == ((20,), {"fast": True})
    assert assert_action_planned(action, CreateDisk) is children[1]


def test_assert_action_planned_fails_with_what_was_planned() -> None:
    action = plan_action(create_action(OnlyChildren))

    with pytest.raises(
        AssertionError, match=r"CreateNetwork was not planned; planned: \['CreateDisk'\]"
    ):
        assert_action_planned(action, CreateNetwork)


def test_assert_action_planned_with() -> None:
    action = plan_action(create_action(CreateVM), "web-1", 30)

    stub = assert_action_planned_with(action, CreateDisk, 30, fast=True)
    assert stub.action_class is CreateDisk
    assert_action_planned_with(action, CreateNetwork, "web-1-net")

    with pytest.raises(AssertionError) as wrong_args:
        assert_action_planned_with(action, CreateDisk, 31, fast=True)
    message = str(wrong_args.value)
    assert "CreateDisk was not planned with args=(31,) kwargs={'fast': True}" in message
    assert "planned with: [((30,), {'fast': True})]" in message

    with pytest.raises(AssertionError, match="planned with: nothing"):
        assert_action_planned_with(plan_action(create_action(OnlyChildren)), CreateNetwork, "x")


def test_assert_run_phase() -> None:
    action = plan_action(create_action(CreateVM), "web-1")

    assert_run_phase(action)
    network = planned_actions(action)[0]
    assert_run_phase(action, input={"name": "web-1", "network_id": network.output["id"]})
    with pytest.raises(AssertionError, match=r"run phase input .* != expected"):
        assert_run_phase(action, input={"name": "web-2", "network_id": network.output["id"]})
    with pytest.raises(AssertionError, match="OnlyChildren did not plan its run phase"):
        assert_run_phase(plan_action(create_action(OnlyChildren)))


def test_run_action_uses_planned_input_and_fake_outputs() -> None:
    action = plan_action(create_action(CreateVM), "web-1")
    planned_actions(action)[0].fake_output = {"id": "net-42"}

    ran = run_action(action)

    assert ran.output == {"vm": "web-1@net-42"}
    assert run_action(action, event={"ready": True}).output == {
        "vm": "web-1@net-42",
        "event": {"ready": True},
    }
    assert ran.input["network_id"] == "net-42"


def test_finalize_action_sees_the_run_output() -> None:
    action = plan_action(create_action(CreateVM), "web-1")
    planned_actions(action)[0].fake_output = {"id": "net-7"}

    finalize_action(run_action(action))

    assert FINALIZED == ["web-1@net-7"]


def test_create_action_with_a_trigger_continues_its_plan() -> None:
    parent = create_action(CreateVM)
    child = create_action(CreateNetwork, trigger=parent)

    assert child.execution_plan_id == parent.execution_plan_id
    assert child.id == parent.id + 1
    plan_action(child, "net-a")
    assert run_action(child).output == {"id": "net-net-a"}


class WaitForCallback(Action):
    """Registers a webhook and suspends; the event it gets completes it."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.output["registered"] = True
            self.suspend(lambda suspended: REGISTERED.append(suspended.step_id))
        self.output["payload"] = event


REGISTERED: list[int | None] = []


def test_run_action_on_a_suspending_action_returns_it_suspended() -> None:
    action = plan_action(create_action(WaitForCallback))

    waiting = run_action(action)

    assert waiting.suspended is True
    assert waiting.output == {"registered": True}
    assert [waiting.step_id] == REGISTERED

    done = run_action(waiting, event={"status": "ok"})

    assert done.suspended is False
    assert done.output == {"registered": True, "payload": {"status": "ok"}}
    assert not run_action(plan_action(create_action(CreateNetwork), "net-a")).suspended


class Build(Polling, Action):
    """Polls a fake CI: done on the second poll."""

    poll_intervals = (5,)

    def invoke_external_task(self) -> Any:
        return {"id": 7, "polls": 0}

    def poll_external_task(self) -> Any:
        task = dict(self.external_task)
        task["polls"] += 1
        return task

    def done(self) -> bool:
        return bool(self.external_task["polls"] >= 2)


def test_run_action_polls_a_polling_action() -> None:
    action = plan_action(create_action(Build))

    started = run_action(action)
    world = started.world
    assert isinstance(world, UnitWorld)

    assert started.suspended
    assert started.output["external_task"] == {"id": 7, "polls": 0}
    # the next poll is planned on the world's manual clock; advancing it sends the event
    assert world.clock.pending() == 1
    world.clock.advance(5)
    assert [payload for _, _, payload in world.events] == [POLL]

    polled = run_action(started, event=POLL)
    assert polled.suspended
    assert polled.output["external_task"]["polls"] == 1
    done = run_action(polled, event=POLL)
    assert not done.suspended
    assert done.output["external_task"] == {"id": 7, "polls": 2}


# -- InThreadWorld ------------------------------------------------------------------------


def test_in_thread_world_runs_the_plan_in_the_calling_thread() -> None:
    with InThreadWorld() as world:
        assert isinstance(world.clock, ManualClock)

        triggered = world.trigger(RecordsThread, 3)

        assert triggered.finished.done(), "trigger returns with the plan already finished"
        plan = triggered.finished.result(0)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        threads = {a.output["thread"] for a in plan.actions[1:]}
        assert threads == {threading.get_ident()}
        assert len(plan.actions) == 4


def test_in_thread_world_pauses_a_failing_plan() -> None:
    with InThreadWorld() as world:
        plan = world.trigger(Failing).finished.result(0)

        assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
        step = plan.steps[plan.entry_action.run_step_id]  # type: ignore[index]
        assert step.state is StepState.ERROR
        assert step.error is not None
        assert step.error.message == "no capacity"


# -- the pytest plugin ------------------------------------------------------------------


def test_dynflow_world_fixture(dynflow_world: InThreadWorld) -> None:
    assert isinstance(dynflow_world, InThreadWorld)
    plan = dynflow_world.trigger(CreateNetwork, "lan").finished.result(0)
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output == {"id": "net-lan"}


def test_plugin_is_registered_through_its_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from dynflow import Action
        from dynflow.testing import InThreadWorld


        class Hello(Action):
            def run(self, event=None):
                self.output["greeting"] = "hello " + self.input["name"]


        def test_uses_fixture(dynflow_world):
            assert isinstance(dynflow_world, InThreadWorld)
            plan = dynflow_world.trigger(Hello, name="world").finished.result(0)
            assert plan.entry_action.output == {"greeting": "hello world"}
        """
    )

    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error")

    result.assert_outcomes(passed=1)
