"""Singleton actions (one unfinished plan per class, a coordinator lock) and execution plan
hooks (methods of the entry action called on ``success``/``failure``/``paused``/``stopped``)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

import dynflow
from dynflow import (
    Action,
    ConfigurationError,
    ExecutionPlan,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
    Singleton,
    World,
)
from dynflow.testing import InThreadWorld
from tests.support import Gate

MakeWorld = Callable[..., World]
TIMEOUT = 10
SINGLETON_LOCK = "singleton_action"


# -- shared state between a test and its actions ---------------------------------------


@dataclass
class Probe:
    key: str
    gate: Gate = field(default_factory=Gate)
    #: (hook, plan id, plan state, plan result, entry input mode, entry output) per call
    hooks: list[tuple[Any, ...]] = field(default_factory=list)
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, hook: str, action: Action, plan: ExecutionPlan) -> None:
        with self.lock:
            self.hooks.append(
                (
                    hook,
                    plan.id,
                    plan.state,
                    plan.result,
                    action.input["mode"],
                    dict(action.output),
                )
            )

    def called(self) -> list[str]:
        return [hook for hook, *_ in self.hooks]


PROBES: dict[str, Probe] = {}


@pytest.fixture
def probe(make_world: MakeWorld) -> Iterator[Probe]:
    # depends on make_world so that the gate opens before the worlds terminate
    key = uuid.uuid4().hex
    found = PROBES[key] = Probe(key)
    try:
        yield found
    finally:
        found.gate.open()
        del PROBES[key]


class Broke(Exception):
    """Raised by an action told to fail."""


class HookBroke(Exception):
    """Raised by a hook."""


def behave(action: Action) -> None:
    """What ``mode`` asks of a run: hold at the probe's gate, fail, or just succeed."""
    probe = PROBES[action.input["key"]]
    mode = action.input["mode"]
    if mode == "hold":
        probe.gate.pass_through()
    if mode == "fail" or (mode == "fail-once" and not probe.failed):
        probe.failed = True
        raise Broke("run broke")
    action.output["ran"] = True


# -- singleton actions -----------------------------------------------------------------


class Exclusive(Singleton, Action):
    def plan(self, key: str, mode: str = "ok") -> None:
        if mode == "bad-plan":
            raise Broke("plan broke")
        self.plan_self(key=key, mode=mode)

    def run(self, event: Any = None) -> None:
        behave(self)


class OtherExclusive(Exclusive):
    """Another singleton class: its own lock."""


class HoldsExclusive(Action):
    """Plans the singleton as a child action."""

    def plan(self, key: str) -> None:
        self.plan_action(Exclusive, key, "hold")


# -- hooked actions --------------------------------------------------------------------


class Hooked(Action):
    def plan(self, key: str, mode: str = "ok") -> None:
        self.plan_self(key=key, mode=mode)

    def run(self, event: Any = None) -> None:
        behave(self)

    @dynflow.plan_hook("success")
    def on_success(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("success", self, plan)

    @dynflow.plan_hook("failure")
    def on_failure(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("failure", self, plan)

    @dynflow.plan_hook("paused")
    def on_paused(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("paused", self, plan)

    @dynflow.plan_hook("stopped")
    def on_stopped(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("stopped", self, plan)


class FailingHooked(Hooked):
    rescue_strategy = Rescue.FAIL


class InheritedHooks(Hooked):
    @dynflow.plan_hook("success", "paused")
    def on_success_or_paused(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("inherited", self, plan)


class RaisingHooks(Action):
    """The first hook raises; the next one still runs."""

    def plan(self, key: str, mode: str = "ok") -> None:
        self.plan_self(key=key, mode=mode)

    def run(self, event: Any = None) -> None:
        behave(self)

    @dynflow.plan_hook("success", "stopped")
    def explode(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("explode", self, plan)
        raise HookBroke("hook broke")

    @dynflow.plan_hook("stopped")
    def after(self, plan: ExecutionPlan) -> None:
        PROBES[self.input["key"]].note("after", self, plan)


class SlowHook(Action):
    """Its success hook holds at the probe's gate."""

    def plan(self, key: str) -> None:
        self.plan_self(key=key, mode="ok")

    def run(self, event: Any = None) -> None:
        behave(self)

    @dynflow.plan_hook("success")
    def wait_at_gate(self, plan: ExecutionPlan) -> None:
        probe = PROBES[self.input["key"]]
        probe.note(threading.current_thread().name, self, plan)
        probe.gate.pass_through()


class WrapsHooked(Action):
    """Hooked as a child action: its hooks are not the plan's (not the entry action)."""

    def plan(self, key: str) -> None:
        self.plan_action(Hooked, key)


# -- helpers ---------------------------------------------------------------------------


def load(world: World, plan_id: str) -> ExecutionPlan:
    return world.persistence.load_execution_plan(plan_id)


def singleton_locks(world: World) -> list[tuple[str, str | None]]:
    return [
        (lock.id, lock.owner_id) for lock in world.coordinator.find_locks(lock_class=SINGLETON_LOCK)
    ]


def entered(probe: Probe) -> None:
    assert probe.gate.entered.wait(TIMEOUT), "the step never reached the gate"


def assert_refused(world: World, holder: str, call: Callable[[], Any]) -> ExecutionPlan:
    """``call`` fails planning naming ``holder``; the refused plan is kept stopped/error."""
    with pytest.raises(PlanningFailed) as caught:
        call()
    message = str(caught.value)
    assert holder in message
    assert "singleton action" in message
    assert Exclusive.class_name() in message or OtherExclusive.class_name() in message
    refused = load(world, caught.value.execution_plan_id)
    assert refused.id != holder
    assert (refused.state, refused.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert all(owner != refused.id for _, owner in singleton_locks(world))
    return refused


def hooks_done(world: World) -> None:
    """Hooks run in the world's pool: terminating the world waits for them."""
    world.terminate()


# -- singletons ------------------------------------------------------------------------


def test_second_trigger_while_the_first_runs_fails_naming_it(world: World, probe: Probe) -> None:
    first = world.trigger(Exclusive, probe.key, "hold")
    entered(probe)
    assert singleton_locks(world) == [(Exclusive.class_name(), first.execution_plan_id)]

    refused = assert_refused(
        world, first.execution_plan_id, lambda: world.trigger(Exclusive, probe.key)
    )
    (error,) = refused.errors
    assert first.execution_plan_id in error.message
    assert_refused(world, first.execution_plan_id, lambda: world.plan(Exclusive, probe.key))
    assert not first.finished.done()

    probe.gate.open()
    done = first.finished.result(TIMEOUT)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert singleton_locks(world) == []

    again = world.trigger(Exclusive, probe.key)
    assert again.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert singleton_locks(world) == []


def test_paused_plan_keeps_the_lock_until_halted(world: World, probe: Probe) -> None:
    first = world.trigger(Exclusive, probe.key, "fail")
    paused = first.finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert singleton_locks(world) == [(Exclusive.class_name(), paused.id)]

    assert_refused(world, paused.id, lambda: world.trigger(Exclusive, probe.key))

    halted = world.halt(paused.id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert singleton_locks(world) == []
    assert world.trigger(Exclusive, probe.key).finished.result(TIMEOUT).result is (
        PlanResult.SUCCESS
    )


def test_halting_a_running_singleton_releases_its_lock(world: World, probe: Probe) -> None:
    first = world.trigger(Exclusive, probe.key, "hold")
    entered(probe)
    halted = world.halt(first.execution_plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert singleton_locks(world) == []

    # the halted step is still held at the gate: a new plan may start anyway
    again = world.trigger(Exclusive, probe.key, "ok")
    assert again.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    probe.gate.open()


def test_planned_singleton_holds_the_lock_until_halted(world: World, probe: Probe) -> None:
    planned = world.plan(Exclusive, probe.key)
    assert planned.state is PlanState.PLANNED
    assert singleton_locks(world) == [(Exclusive.class_name(), planned.id)]
    assert_refused(world, planned.id, lambda: world.trigger(Exclusive, probe.key))

    halted = world.halt(planned.id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert singleton_locks(world) == []
    assert world.trigger(Exclusive, probe.key).finished.result(TIMEOUT).result is (
        PlanResult.SUCCESS
    )


def test_different_singleton_classes_do_not_block_each_other(world: World, probe: Probe) -> None:
    first = world.trigger(Exclusive, probe.key, "hold")
    entered(probe)
    other = world.trigger(OtherExclusive, probe.key, "hold")
    assert sorted(singleton_locks(world)) == sorted(
        [
            (Exclusive.class_name(), first.execution_plan_id),
            (OtherExclusive.class_name(), other.execution_plan_id),
        ]
    )
    assert_refused(world, other.execution_plan_id, lambda: world.trigger(OtherExclusive, probe.key))

    probe.gate.open()
    assert first.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert other.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert singleton_locks(world) == []


def test_singleton_planned_as_a_child_action_takes_the_lock(world: World, probe: Probe) -> None:
    holder = world.trigger(HoldsExclusive, probe.key)
    entered(probe)
    assert singleton_locks(world) == [(Exclusive.class_name(), holder.execution_plan_id)]
    assert_refused(world, holder.execution_plan_id, lambda: world.trigger(Exclusive, probe.key))
    probe.gate.open()
    assert holder.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert singleton_locks(world) == []


def test_failed_planning_leaves_no_lock(world: World, probe: Probe) -> None:
    with pytest.raises(PlanningFailed, match="plan broke"):
        world.trigger(Exclusive, probe.key, "bad-plan")
    assert singleton_locks(world) == []
    assert world.trigger(Exclusive, probe.key).finished.result(TIMEOUT).result is (
        PlanResult.SUCCESS
    )


def test_concurrent_triggers_only_one_plans(world: World, probe: Probe) -> None:
    barrier = threading.Barrier(2)

    def attempt() -> str:
        barrier.wait(TIMEOUT)
        try:
            return world.trigger(Exclusive, probe.key, "hold").execution_plan_id
        except PlanningFailed:
            return "refused"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(f.result(TIMEOUT) for f in [pool.submit(attempt) for _ in range(2)])
    assert outcomes[1] == "refused"
    assert singleton_locks(world) == [(Exclusive.class_name(), outcomes[0])]
    probe.gate.open()


# -- hooks -----------------------------------------------------------------------------


def test_success_runs_success_and_stopped_hooks_only(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    done = world.trigger(Hooked, probe.key).finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    hooks_done(world)

    assert sorted(probe.hooks) == sorted(
        [
            ("success", done.id, PlanState.STOPPED, PlanResult.SUCCESS, "ok", {"ran": True}),
            ("stopped", done.id, PlanState.STOPPED, PlanResult.SUCCESS, "ok", {"ran": True}),
        ]
    )


def test_paused_plan_runs_failure_and_paused_hooks(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    paused = world.trigger(Hooked, probe.key, "fail").finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    hooks_done(world)

    assert sorted(probe.hooks) == sorted(
        [
            ("failure", paused.id, PlanState.PAUSED, PlanResult.ERROR, "fail", {}),
            ("paused", paused.id, PlanState.PAUSED, PlanResult.ERROR, "fail", {}),
        ]
    )
    # nothing else happened to the plan
    stored = load(make_world(db_url, auto_execute=False), paused.id)
    assert (stored.state, stored.result) == (PlanState.PAUSED, PlanResult.ERROR)


def test_halting_a_running_plan_runs_failure_and_stopped_hooks(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    triggered = world.trigger(Hooked, probe.key, "hold")
    entered(probe)
    halted = world.halt(triggered.execution_plan_id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    probe.gate.open()
    hooks_done(world)

    assert sorted(probe.called()) == ["failure", "stopped"]
    assert {(h[2], h[3]) for h in probe.hooks} == {(PlanState.STOPPED, PlanResult.ERROR)}


def test_halting_a_paused_plan_runs_its_stopped_hooks(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    paused = world.trigger(Hooked, probe.key, "fail").finished.result(TIMEOUT)
    halted = world.halt(paused.id).result(TIMEOUT)
    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    hooks_done(world)

    by_state = sorted((h[0], h[2]) for h in probe.hooks)
    assert by_state == sorted(
        [
            ("failure", PlanState.PAUSED),
            ("paused", PlanState.PAUSED),
            ("failure", PlanState.STOPPED),
            ("stopped", PlanState.STOPPED),
        ]
    )


def test_rescue_fail_runs_failure_and_stopped_hooks(
    db_url: str, make_world: MakeWorld, probe: Probe
) -> None:
    world = make_world(db_url)
    failed = world.trigger(FailingHooked, probe.key, "fail").finished.result(TIMEOUT)
    assert (failed.state, failed.result) == (PlanState.STOPPED, PlanResult.ERROR)
    hooks_done(world)
    assert sorted(probe.called()) == ["failure", "stopped"]


def test_resumed_plan_runs_the_hooks_of_each_transition(db_url: str) -> None:
    key = uuid.uuid4().hex
    probe = PROBES[key] = Probe(key)
    try:
        with InThreadWorld(db_url) as world:
            paused = world.trigger(Hooked, key, "fail-once").finished.result(0)
            # inline: the hooks already ran, in definition order
            assert probe.called() == ["failure", "paused"]
            done = world.resume(paused.id).result(0)
            assert done.result is PlanResult.SUCCESS
            assert probe.called() == ["failure", "paused", "success", "stopped"]
            assert probe.hooks[-1][1:] == (
                done.id,
                PlanState.STOPPED,
                PlanResult.SUCCESS,
                "fail-once",
                {"ran": True},
            )
    finally:
        del PROBES[key]


def test_raising_hook_changes_nothing_and_the_others_run(
    db_url: str, make_world: MakeWorld, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(db_url)
    with caplog.at_level(logging.ERROR, logger="dynflow.world"):
        done = world.trigger(RaisingHooks, probe.key).finished.result(TIMEOUT)
        hooks_done(world)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert probe.called() == ["explode", "after"]
    assert f"hook explode of execution plan {done.id} failed" in caplog.text
    stored = load(make_world(db_url, auto_execute=False), done.id)
    assert (stored.state, stored.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert stored.errors == []


def test_a_slow_hook_does_not_hold_up_the_executor(world: World, probe: Probe) -> None:
    slow = world.trigger(SlowHook, probe.key).finished.result(TIMEOUT)
    assert slow.result is PlanResult.SUCCESS
    entered(probe)
    # the hook is blocked; other plans still run to the end, and their hooks too
    other_key = uuid.uuid4().hex
    other = PROBES[other_key] = Probe(other_key)
    try:
        done = world.trigger(Hooked, other_key).finished.result(TIMEOUT)
        assert done.result is PlanResult.SUCCESS
        probe.gate.open()
        hooks_done(world)
        assert sorted(other.called()) == ["stopped", "success"]
    finally:
        del PROBES[other_key]
    (thread_name,) = probe.called()
    assert thread_name.startswith("dynflow-hooks")


def test_hooks_are_inherited(db_url: str, make_world: MakeWorld, probe: Probe) -> None:
    world = make_world(db_url)
    done = world.trigger(InheritedHooks, probe.key).finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    hooks_done(world)
    assert sorted(probe.called()) == ["inherited", "stopped", "success"]


def test_only_the_entry_actions_hooks_run(db_url: str, make_world: MakeWorld, probe: Probe) -> None:
    world = make_world(db_url)
    done = world.trigger(WrapsHooked, probe.key).finished.result(TIMEOUT)
    assert done.result is PlanResult.SUCCESS
    hooks_done(world)
    assert probe.hooks == []


def test_hooks_run_inline_on_an_in_thread_world(db_url: str) -> None:
    key = uuid.uuid4().hex
    probe = PROBES[key] = Probe(key)
    try:
        with InThreadWorld(db_url) as world:
            done = world.trigger(InheritedHooks, key).finished.result(0)
            assert probe.called() == ["success", "stopped", "inherited"]
            assert probe.hooks[0][1:] == (
                done.id,
                PlanState.STOPPED,
                PlanResult.SUCCESS,
                "ok",
                {"ran": True},
            )
            paused = world.trigger(InheritedHooks, key, "fail").finished.result(0)
            assert probe.called()[3:] == ["failure", "paused", "inherited"]
            assert {h[1] for h in probe.hooks[3:]} == {paused.id}
    finally:
        del PROBES[key]


@pytest.mark.parametrize("kinds", [(), ("finished",), ("success", "done")])
def test_plan_hook_with_unknown_kinds_is_a_configuration_error(kinds: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError, match="plan_hook needs some of"):
        dynflow.plan_hook(*kinds)
