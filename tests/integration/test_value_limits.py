"""``World(max_value_bytes=...)``: an action input, an action output or an event payload
larger than that as JSON is refused with an error naming it, its size and the limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dynflow import (
    Action,
    ConfigurationError,
    PlanningFailed,
    PlanResult,
    PlanState,
    StepState,
    World,
)
from dynflow.config import WorldConfig
from dynflow.errors import ValueTooLarge
from tests.support import suspended_step

MakeWorld = Callable[..., World]
TIMEOUT = 10
LIMIT = 1000
#: ``{"blob":"xx...x"}`` is this many bytes longer than its blob
WRAPPING = len('{"blob":""}')


class Carry(Action):
    """Its input is a blob."""

    def plan(self, blob: str) -> None:
        self.plan_self(blob=blob)

    def run(self, event: Any = None) -> None:
        pass


class Produce(Action):
    """Outputs a blob of the size it is told, after a small output of its own."""

    def plan(self, size: int) -> None:
        self.plan_self(size=size)

    def run(self, event: Any = None) -> None:
        self.output["blob"] = "x" * (self.input["size"] - WRAPPING)


class Listen(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


def test_the_default_limit_is_ten_megabytes() -> None:
    assert WorldConfig().max_value_bytes == 10 * 1024 * 1024


def test_a_limit_below_one_byte_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        WorldConfig(max_value_bytes=0)


def test_an_input_over_the_limit_fails_planning(db_url: str, make_world: MakeWorld) -> None:
    world = make_world(db_url, max_value_bytes=LIMIT)
    assert world.trigger(Carry, "x" * (LIMIT - WRAPPING)).finished.result(TIMEOUT).result is (
        PlanResult.SUCCESS
    )  # exactly at the limit

    with pytest.raises(PlanningFailed) as failed:
        world.trigger(Carry, "x" * (LIMIT - WRAPPING + 1))

    message = str(failed.value)
    assert "Carry input" in message
    assert f"{LIMIT + 1} bytes" in message
    assert f"limit of {LIMIT} bytes" in message
    assert "max_value_bytes" in message
    plan = world.persistence.load_execution_plan(failed.value.execution_plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    [error] = plan.errors
    assert error.exception_class.endswith("ValueTooLarge")


def test_an_output_over_the_limit_fails_its_step_and_the_world_goes_on(
    db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(db_url, max_value_bytes=LIMIT)

    paused = world.trigger(Produce, LIMIT + 1).finished.result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [step] = [s for s in paused.steps.values() if s.phase == "run"]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class.endswith("ValueTooLarge")
    assert "Produce output" in step.error.message
    assert f"{LIMIT + 1} bytes" in step.error.message
    assert f"limit of {LIMIT} bytes" in step.error.message
    stored = world.persistence.load_execution_plan(paused.id)
    assert stored.entry_action.output == {}  # the oversized output was not kept
    fits = world.trigger(Produce, LIMIT).finished.result(TIMEOUT)
    assert fits.result is PlanResult.SUCCESS


def test_an_event_payload_over_the_limit_is_refused(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url, max_value_bytes=LIMIT)
    triggered = world.trigger(Listen)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(world, plan_id)

    refused = world.event(plan_id, step_id, {"blob": "x" * LIMIT})

    with pytest.raises(ValueTooLarge, match=f"event for step {step_id} is {LIMIT + WRAPPING}"):
        refused.result(TIMEOUT)
    assert world.event(plan_id, step_id, {"blob": "small"}).result(TIMEOUT) is True
    assert triggered.finished.result(TIMEOUT).result is PlanResult.SUCCESS
