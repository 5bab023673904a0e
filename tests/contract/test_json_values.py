"""Any JSON value Python's ``json`` accepts is stored and read back unchanged on every
database (NUL characters and lone surrogates included), and the other text a plan
stores never stops an executor."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dynflow import Action, PlanResult, PlanState, StepState, World
from dynflow.errors import DataRefused
from dynflow.execution_plan.builder import PlanBuilder
from dynflow.persistence import Persistence, open_persistence
from tests.conftest import make_url
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 10

#: what PostgreSQL's text and json functions refuse, and what JSON escapes anyway
AWKWARD: dict[str, Any] = {
    "nul": "a\x00b",
    "nul\x00key": ["\x00", "\\u0000", "\\\x00", "\x00\x00"],
    "controls": "".join(chr(i) for i in range(32)) + "\x7f",
    "surrogates": "\ud800 \udfff \udbff",
    "pair": "\U0001f680",
    "escapes": '"\\/\b\f\n\r\t',
    "separators": "\u2028\u2029\ufeff",
    "numbers": [0, -1, 1.5, 1e300, -2.5e-300, 2**63, -(2**70)],
    "empty": {"": [], "x": {}, "y": ""},
    "nested": [[[{"deep": "\x00"}]]],
}


def test_the_awkward_values_are_json_python_accepts() -> None:
    assert json.loads(json.dumps(AWKWARD)) == AWKWARD


class Echo(Action):
    """Output = input; the output also gets keys and values of its own with NUL."""

    def plan(self, value: Any) -> None:
        self.plan_self(value=value)

    def run(self, event: Any = None) -> None:
        self.output["value"] = self.input["value"]
        self.output["x"] = "a\x00b"
        self.output["\x00"] = {"\x00": "\x00"}


class Fail(Action):
    def run(self, event: Any = None) -> None:
        raise ValueError("bad \x00 value \ud800")


class Wait(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["event"] = event


class NulLabel(Action):
    label = "nul\x00label \ud800"

    def run(self, event: Any = None) -> None:
        pass


def test_inputs_and_outputs_round_trip_identically(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)

    finished = world.trigger(Echo, AWKWARD).finished.result(TIMEOUT)

    assert (finished.state, finished.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    loaded = reader.load_execution_plan(finished.id)
    assert loaded.entry_action.input == {"value": AWKWARD}
    assert loaded.entry_action.output == {
        "value": AWKWARD,
        "x": "a\x00b",
        "\x00": {"\x00": "\x00"},
    }
    [found] = reader.find_execution_plans({"id": finished.id})
    assert found.entry_action.output["value"] == AWKWARD


def test_a_plan_with_nul_in_its_output_does_not_stop_the_executor(
    any_db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(any_db_url)
    first = world.trigger(Echo, "\x00")
    second = world.trigger(Echo, "after")

    assert first.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert second.finished.result(TIMEOUT).result is PlanResult.SUCCESS


def test_an_error_message_with_nul_is_recorded(
    any_db_url: str, make_world: MakeWorld, reader: Persistence, caplog: pytest.LogCaptureFixture
) -> None:
    # the step's warning repeats the message; its lone surrogate cannot travel in a test
    # report between pytest-xdist's processes (UTF-8 only), so it is not captured
    caplog.set_level(logging.ERROR, logger="dynflow.steps")
    world = make_world(any_db_url)

    paused = world.trigger(Fail).finished.result(TIMEOUT)

    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    [error] = reader.load_execution_plan(paused.id).errors
    assert error.message == "bad \x00 value \ud800"
    assert error.exception_class == "ValueError"


def test_an_event_payload_round_trips(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)
    triggered = world.trigger(Wait)
    step_id = eventually(
        lambda: next(
            (
                s.id
                for s in reader.load_execution_plan(triggered.execution_plan_id).steps.values()
                if s.state is StepState.SUSPENDED
            ),
            None,
        )
    )

    assert world.event(triggered.execution_plan_id, step_id, AWKWARD).result(TIMEOUT) is True

    finished = triggered.finished.result(TIMEOUT)
    assert finished.result is PlanResult.SUCCESS
    assert reader.load_execution_plan(finished.id).entry_action.output == {"event": AWKWARD}


def test_an_event_payload_crosses_worlds_through_the_database(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    executor = make_world(any_db_url, connector="database")
    client = make_world(any_db_url, connector="database", executor=False)
    triggered = client.trigger(Wait)
    step_id = eventually(
        lambda: next(
            (
                s.id
                for s in reader.load_execution_plan(triggered.execution_plan_id).steps.values()
                if s.state is StepState.SUSPENDED
            ),
            None,
        )
    )

    assert client.event(triggered.execution_plan_id, step_id, AWKWARD).result(TIMEOUT) is True

    finished = triggered.finished.result(TIMEOUT)
    assert finished.entry_action.output == {"event": AWKWARD}
    assert executor.persistence.load_execution_plan(finished.id).entry_action.output == {
        "event": AWKWARD
    }


def test_a_label_with_nul_is_stored_the_same_everywhere(
    any_db_url: str, make_world: MakeWorld, reader: Persistence
) -> None:
    world = make_world(any_db_url)

    finished = world.trigger(NulLabel).finished.result(TIMEOUT)

    # text columns cannot hold NUL on PostgreSQL nor a lone surrogate anywhere: the
    # label (text for people) keeps a replacement character instead, on every database
    assert finished.label == "nul\ufffdlabel \ufffd"
    loaded = reader.load_execution_plan(finished.id)
    assert loaded.label == finished.label
    assert loaded.entry_action.label == finished.label


def test_a_value_postgresql_refuses_is_a_clear_error_without_the_statement(
    tmp_path: Path,
) -> None:
    persistence = open_persistence(make_url("postgresql", tmp_path))
    persistence.migrate()
    try:
        builder = PlanBuilder(None)  # type: ignore[arg-type]
        builder.build(NulLabel, (), {})
        plan = builder.plan(PlanState.PLANNED, PlanResult.PENDING)
        plan.label = "raw \x00 label"  # past the builder, which would have replaced it

        with pytest.raises(DataRefused) as refused:
            persistence.save_new_plan(plan)

        message = str(refused.value)
        assert "refused a value" in message
        assert "INSERT" not in message
        assert "dynflow_execution_plans" not in message
        assert refused.value.__cause__ is None
        assert refused.value.__suppress_context__
    finally:
        persistence.close()
