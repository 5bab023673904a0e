"""Traces through the OpenTelemetry API (extra ``otel``): one span per execution of a
plan (from its start to its stop or pause) and one per step phase.

The context current where a plan was triggered (or planned) travels with the plan,
as W3C trace context headers (``plan.trace_context``, stored in the plan's ``data``):
the executor that runs it, in any process, makes the plan's span a child of it. A
step's span is a child of its plan's span; the plan phase's spans are children of
the span current while planning. Spans go to the tracer provider given
(``World(tracing=provider)``) or to the global one (``World(tracing=True)``).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import ProxyTracerProvider, Span, Status, StatusCode

if TYPE_CHECKING:
    from dynflow.execution_plan.model import ExecutionPlan

log = logging.getLogger(__name__)

PLAN_ID = "dynflow.plan_id"
STEP_ID = "dynflow.step_id"
ACTION_CLASS = "dynflow.action_class"
PHASE = "dynflow.phase"
RESULT = "dynflow.result"
LABEL = "dynflow.label"


class Tracing:
    """The spans of one world: the plans it executes, the phases it runs."""

    def __init__(self, provider: Any = None) -> None:
        self.tracer = trace.get_tracer("dynflow", tracer_provider=provider)
        #: spans go to the global provider, which may be set (or not) at any time
        self._global = provider is None
        self._recording = not self._global
        self._check_at = 0.0
        self._plans: dict[str, Span] = {}
        self._lock = threading.Lock()

    def recording(self) -> bool:
        """False while spans would go nowhere: the global provider was asked for and
        none is set yet (OpenTelemetry's proxy then hands out no-op spans). Looked at
        again at most once a second (the look reads the environment), so that a provider
        set after the world started gets the spans from then on."""
        if self._recording:
            return True
        at = time.monotonic()
        if at >= self._check_at:
            self._check_at = at + 1.0
            provider = trace.get_tracer_provider()
            self._recording = not isinstance(provider, ProxyTracerProvider)
        return self._recording

    @staticmethod
    def carrier() -> dict[str, str] | None:
        """The current context as W3C trace context headers (None without a span)."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        return headers or None

    # -- plans ----------------------------------------------------------------------

    def plan_started(self, plan: ExecutionPlan, future: Future[ExecutionPlan]) -> None:
        if not self.recording():
            return
        parent = propagate.extract(plan.trace_context) if plan.trace_context else None
        span = self.tracer.start_span(
            f"execution plan {plan.label}",
            context=parent,
            attributes={PLAN_ID: plan.id, LABEL: plan.label},
        )
        with self._lock:
            old = self._plans.get(plan.id)
            self._plans[plan.id] = span
        if old is not None:  # its last run here ended without a word (its world was dropped)
            old.end()
        future.add_done_callback(lambda done: self._plan_done(plan.id, span, done))

    def _plan_done(self, plan_id: str, span: Span, future: Future[ExecutionPlan]) -> None:
        with self._lock:
            if self._plans.get(plan_id) is span:
                del self._plans[plan_id]
        error = future.exception()
        if error is not None:
            span.set_attribute(RESULT, "error")
            span.set_status(Status(StatusCode.ERROR, str(error)))
        else:
            plan = future.result()
            span.set_attribute(RESULT, str(plan.result))
            span.set_attribute("dynflow.state", str(plan.state))
            if str(plan.result) == "error":
                span.set_status(Status(StatusCode.ERROR, f"plan {plan.state}/{plan.result}"))
        span.end()

    # -- steps ----------------------------------------------------------------------

    def step_started(
        self, plan_id: str, step_id: int, action_class: str, phase: str, planning: bool = False
    ) -> StepSpan:
        """A phase's span, current until :meth:`StepSpan.finish`: a child of the plan's
        span when this world executes the plan, else of the current span."""
        if not self.recording():
            return _NO_SPAN
        parent = None
        if not planning:
            plan_span = self._plans.get(plan_id)
            if plan_span is not None:
                parent = trace.set_span_in_context(plan_span)
        span = self.tracer.start_span(
            f"{phase} {action_class.rpartition('.')[2]}",
            context=parent,
            attributes={
                PLAN_ID: plan_id,
                STEP_ID: step_id,
                ACTION_CLASS: action_class,
                PHASE: phase,
            },
        )
        return StepSpan(span, context.attach(trace.set_span_in_context(span)))


class StepSpan:
    """A phase's span and the context it made current."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token

    def finish(self, result: str, error: str | None) -> None:
        if self.token is None:  # no span: nothing records it
            return
        self.span.set_attribute(RESULT, result)
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, error))
        try:
            context.detach(self.token)  # type: ignore[arg-type]
        finally:
            self.span.end()


#: what :meth:`Tracing.step_started` hands out while nothing records spans
_NO_SPAN = StepSpan(trace.INVALID_SPAN, None)
