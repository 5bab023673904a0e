"""Observability: the plan's life in the logs, Prometheus metrics, OpenTelemetry traces.

A world builds one :class:`Observability` and hands it to its parts once: the
executor's front (a plan starts), the step runner (a phase ran), the committer (a
batch was written) and the finished-plan callback (a plan stopped or paused).
Logging is always on (INFO per plan, WARNING per failed step, nothing per step at
INFO); metrics (``World(metrics=True)``, extra ``metrics``) and traces
(``World(tracing=True)``, the default, when the ``otel`` extra is installed) are
imported only when used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dynflow.errors import ConfigurationError
from dynflow.execution_plan.states import PlanState, StepState

if TYPE_CHECKING:
    from dynflow.config import WorldConfig
    from dynflow.coordinator import Coordinator
    from dynflow.execution_plan.model import ExecutionPlan
    from dynflow.executor.work import StepDone, Work
    from dynflow.observe.metrics import Metrics
    from dynflow.observe.tracing import Tracing
    from dynflow.persistence import PersistencePort


class Committing(Protocol):
    on_commit: Callable[[], None] | None
    on_finished: Callable[[ExecutionPlan], None] | None


class Running(Protocol):
    observe: Observability


@runtime_checkable
class Observed(Protocol):
    """An executor that tells of the plans handed to it (``ExecutorFront``)."""

    observe: Observability


log = logging.getLogger("dynflow.plans")
steps_log = logging.getLogger("dynflow.steps")


class Observability:
    """What the engine tells the logs, the metrics and the traces of one world."""

    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        #: this world's metrics (``.registry`` to serve), None when off
        self.metrics = metrics
        #: this world's tracing, None when off or OpenTelemetry is not installed
        self.tracing = tracing

    @classmethod
    def build(
        cls, config: WorldConfig, persistence: PersistencePort, coordinator: Coordinator
    ) -> Observability:
        """From ``World(metrics=..., tracing=...)`` (see :class:`~dynflow.config.WorldConfig`)."""
        metrics = None
        if config.metrics is not None and config.metrics is not False:
            try:
                from dynflow.observe.metrics import Metrics
            except ImportError:
                raise ConfigurationError(
                    "World(metrics=...) needs prometheus-client: pip install 'pydynflow[metrics]'"
                ) from None
            option = None if config.metrics is True else config.metrics
            metrics = Metrics(option, persistence, coordinator)
        return cls(metrics, tracing_for(config.tracing))

    def attach(self, core: Committing, runner: Running, executor: object) -> None:
        """Hook into an executor world's parts: the plans handed to its executor, the
        phases its runner runs, its core's commits and finished plans, and its worker
        pools (read at scrape time)."""
        runner.observe = self
        then = core.on_finished
        if isinstance(executor, Observed):
            executor.observe = self
        if then is not None:
            core.on_finished = partial(self._finished, then)
        if self.metrics is not None:
            core.on_commit = self.metrics.committed
            self.metrics.pools = dict(getattr(executor, "pools", None) or {})

    # -- plans --------------------------------------------------------------------------

    def _finished(self, then: Callable[[ExecutionPlan], None], plan: ExecutionPlan) -> None:
        self.plan_finished(plan)
        then(plan)

    def plan_starting(self, plan: ExecutionPlan, future: Future[ExecutionPlan]) -> None:
        """The executor was handed ``plan``; ``future`` resolves when it stops or pauses."""
        if log.isEnabledFor(logging.INFO):  # the record's fields cost even when dropped
            log.info(
                "execution plan %s (%s) starts",
                plan.id,
                plan.label,
                extra={"plan_id": plan.id, "label": plan.label},
            )
        if self.tracing is not None:
            self.tracing.plan_started(plan, future)

    def plan_finished(self, plan: ExecutionPlan) -> None:
        if log.isEnabledFor(logging.INFO):
            _log_finished(plan)
        if self.metrics is not None:
            self.metrics.plan_finished(plan)

    # -- steps ----------------------------------------------------------------------------

    def step(self, work: Work) -> StepWatch:
        """``with observe.step(work) as watch: return watch(runner(work))``: the phase's
        span is current inside; ``watch`` records its result."""
        return StepWatch(self, work)

    def step_done(self, work: Work, done: StepDone) -> None:
        if self.metrics is not None:
            self.metrics.step(work.action_class, done.state, done.execution_time)
        if done.state is StepState.ERROR and done.error is not None:
            steps_log.warning(
                "step %s (%s %s) of execution plan %s failed%s: %s: %s",
                work.step_id,
                work.phase,
                work.action_class,
                work.execution_plan_id,
                " (to be retried)" if done.retry else "",
                done.error.exception_class,
                done.error.message,
                extra={
                    "plan_id": work.execution_plan_id,
                    "step_id": work.step_id,
                    "action_class": work.action_class,
                    "phase": str(work.phase),
                    "exception_class": done.error.exception_class,
                    "error_message": done.error.message,
                    "retry": done.retry,
                },
            )


def tracing_for(option: Any) -> Tracing | None:
    """``World(tracing=...)``: False/None: off; True: the global tracer provider when
    OpenTelemetry is installed (off without it); a tracer provider: that one."""
    if option is None or option is False:
        return None
    try:
        from dynflow.observe.tracing import Tracing
    except ImportError:
        if option is True:
            return None
        raise ConfigurationError(
            "World(tracing=<tracer provider>) needs OpenTelemetry: pip install 'pydynflow[otel]'"
        ) from None
    return Tracing(None if option is True else option)


class StepWatch:
    """One phase of one action being run: its span current, its result recorded."""

    __slots__ = ("_observe", "_span", "_work")

    def __init__(self, observe: Observability, work: Work) -> None:
        self._observe = observe
        self._work = work
        self._span: Any = None

    def __enter__(self) -> Callable[[StepDone], StepDone]:
        tracing = self._observe.tracing
        if tracing is not None:
            work = self._work
            self._span = tracing.step_started(
                work.execution_plan_id, work.step_id, work.action_class, str(work.phase)
            )
        return self._done

    def _done(self, done: StepDone) -> StepDone:
        self._observe.step_done(self._work, done)
        if self._span is not None:
            error = done.error
            result = str(done.state)
            self._span.finish(result, None if error is None else str(error))
            self._span = None
        return done

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._span is not None:  # the runner itself failed: no report
            self._span.finish("error", repr(exc) if exc is not None else "no result")
            self._span = None


def _log_finished(plan: ExecutionPlan) -> None:
    verb = "stopped" if plan.state is PlanState.STOPPED else str(plan.state)
    log.info(
        "execution plan %s (%s) %s: %s",
        plan.id,
        plan.label,
        verb,
        plan.result,
        extra={
            "plan_id": plan.id,
            "label": plan.label,
            "state": str(plan.state),
            "result": str(plan.result),
        },
    )
