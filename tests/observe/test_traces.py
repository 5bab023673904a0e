"""OpenTelemetry spans of a threaded world, recorded by the SDK's in-memory exporter: a
plan triggered inside a span is traced as its descendant, on every database (the
context is stored with the plan)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dynflow import Action, PlanResult, PlanState, World
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 15


class Inner(Action):
    """Reports the span current while it runs and finalizes."""

    def run(self, event: Any = None) -> None:
        self.output["run_span"] = _current_span_id()

    def finalize(self) -> None:
        assert self.output["run_span"]


class Broken(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("no route to host")


class Outer(Action):
    def plan(self, broken: bool = False) -> None:
        with self.sequence():
            self.plan_action(Inner)
            if broken:
                self.plan_action(Broken)


def _current_span_id() -> str:
    return format(trace.get_current_span().get_span_context().span_id, "016x")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def plan_span(exporter: InMemorySpanExporter, plan_id: str) -> ReadableSpan:
    def find() -> ReadableSpan | None:
        return next(
            (
                s
                for s in exporter.get_finished_spans()
                if s.name.startswith("execution plan ")
                and (s.attributes or {}).get("dynflow.plan_id") == plan_id
            ),
            None,
        )

    found: ReadableSpan = eventually(find, timeout=TIMEOUT)
    return found


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_plan_and_its_steps_are_descendants_of_the_span_it_was_triggered_in(
    db_url: str, make_world: MakeWorld, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    world = make_world(db_url, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        triggered = world.trigger(Outer)
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    trace_id = caller.get_span_context().trace_id

    stored = world.persistence.load_execution_plan(plan.id)
    assert stored.trace_context is not None
    assert format(trace_id, "032x") in stored.trace_context["traceparent"]

    top = plan_span(exporter, plan.id)
    assert top.context is not None
    assert top.parent is not None
    assert top.parent.span_id == caller.get_span_context().span_id
    assert top.context.trace_id == trace_id
    assert attributes(top)["dynflow.result"] == "success"

    by_step = {
        attributes(s)["dynflow.step_id"]: s
        for s in exporter.get_finished_spans()
        if "dynflow.step_id" in attributes(s)
    }
    assert set(by_step) == set(plan.steps)  # one span per step phase
    for step in plan.steps.values():
        span = by_step[step.id]
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == trace_id
        assert attributes(span) == {
            "dynflow.plan_id": plan.id,
            "dynflow.step_id": step.id,
            "dynflow.action_class": step.action_class,
            "dynflow.phase": str(step.phase),
            "dynflow.result": "success",
        }
        if step.phase == "plan":
            parent_step = plan.action(step.action_id).parent_action_id
            expected = (
                caller.get_span_context().span_id
                if parent_step is None
                else by_step[plan.action(parent_step).plan_step_id].context.span_id
            )
            assert span.parent.span_id == expected
        else:
            assert span.parent.span_id == top.context.span_id
    inner = next(a for a in plan.actions if a.action_class == Inner.class_name())
    assert inner.run_step_id is not None
    assert inner.finalize_step_id is not None
    run_span = by_step[inner.run_step_id].context
    assert run_span is not None
    assert inner.output["run_span"] == format(run_span.span_id, "016x")  # current in run
    assert by_step[inner.finalize_step_id].name == "finalize Inner"


def test_a_failed_step_and_its_paused_plan_are_error_spans(
    sqlite_url: str, make_world: MakeWorld, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    world = make_world(sqlite_url, tracing=provider)
    with provider.get_tracer("test").start_as_current_span("caller"):
        plan = world.trigger(Outer, broken=True).finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)

    top = plan_span(exporter, plan.id)
    assert attributes(top)["dynflow.result"] == "error"
    assert top.status.status_code is StatusCode.ERROR
    [failed] = [
        s
        for s in exporter.get_finished_spans()
        if attributes(s).get("dynflow.action_class") == Broken.class_name()
        and attributes(s).get("dynflow.phase") == "run"
    ]
    assert attributes(failed)["dynflow.result"] == "error"
    assert failed.status.status_code is StatusCode.ERROR
    assert "no route to host" in (failed.status.description or "")


def test_without_a_current_span_nothing_is_stored_and_tracing_can_be_off(
    sqlite_url: str, make_world: MakeWorld, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    traced = make_world(sqlite_url, tracing=provider)
    plan = traced.trigger(Outer).finished.result(TIMEOUT)
    assert traced.persistence.load_execution_plan(plan.id).trace_context is None
    assert plan_span(exporter, plan.id).parent is None  # a trace of its own

    exporter.clear()
    off = make_world(sqlite_url, tracing=False)
    with provider.get_tracer("test").start_as_current_span("caller"):
        plan = off.trigger(Outer).finished.result(TIMEOUT)
    assert off.observe.tracing is None
    assert off.persistence.load_execution_plan(plan.id).trace_context is None
    assert [s.name for s in exporter.get_finished_spans()] == ["caller"]


GLOBAL_PROVIDER_LATER = """
import time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from dynflow.observe.tracing import Tracing

tracing = Tracing(None)  # World(tracing=True): the global provider, none set yet
assert not tracing.recording()
tracing.step_started("p1", 1, "app.Before", "run").finish("success", None)

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
deadline = time.monotonic() + 5
while not tracing.recording():  # looked at again within a second
    assert time.monotonic() < deadline
    time.sleep(0.05)
tracing.step_started("p1", 2, "app.After", "run").finish("success", None)
print([span.name for span in exporter.get_finished_spans()])
"""


def test_a_global_provider_set_after_the_world_started_gets_the_spans_from_then_on() -> None:
    """Without a global provider the spans are skipped (they would go nowhere); one set
    later (in a process of its own: the global provider is set once) gets them."""
    import subprocess
    import sys

    output = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_LATER],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert output.strip() == "['run After']"
