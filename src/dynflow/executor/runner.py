"""Runs one phase of one action (in a worker thread or on the event loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dynflow.action import registry
from dynflow.action.base import Action, PhaseContext
from dynflow.action.events import CANCEL, is_engine_event
from dynflow.action.suspended import Suspend, SuspendedAction
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import StepError
from dynflow.execution_plan.states import Phase, StepState
from dynflow.executor.messages import RunTimeout
from dynflow.executor.work import Progress, StepDone, Work
from dynflow.middleware import Middleware, call_chain
from dynflow.observe import Observability
from dynflow.serialization import DEFAULT_MAX_VALUE_BYTES, check_size, freeze, to_json_value
from dynflow.transaction import TransactionAdapter

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld


class StepRunner:
    """Turns a :class:`Work` into a :class:`StepDone`; never raises for user errors."""

    def __init__(
        self,
        world: ActionWorld,
        middleware: Callable[[], Sequence[type[Middleware]]],
        transactions: TransactionAdapter,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self.world = world
        #: the largest output of a step, in bytes of JSON
        self.max_value_bytes = max_value_bytes
        self.middleware = middleware
        self.transactions = transactions
        #: where progress reports and run timeouts go: set by the executor that owns it
        self.report: Callable[[Progress | RunTimeout], None] = _drop
        #: logs, metrics and spans of the phases run (set by the world)
        self.observe = Observability()

    def is_async(self, work: Work) -> bool:
        if work.phase not in (Phase.RUN, Phase.REVERT):
            return False
        try:
            cls = registry.lookup(work.action_class)
        except DynflowError:
            return False
        return cls.has_async_run() if work.phase is Phase.RUN else cls.has_async_revert()

    def run(self, work: Work) -> StepDone:
        with self._deadline(work), self.observe.step(work) as seen:
            return seen(self._run(work))

    def _run(self, work: Work) -> StepDone:
        started_at, started = datetime.now(UTC), time.monotonic()
        action: Action | None = None
        try:
            action, chain = self._prepare(work)
            if work.phase is Phase.FINALIZE:
                with self.transactions.transaction() as tx:
                    action._context.transaction = tx
                    self._call(chain, action, work)
                    output = self._checked_output(action)
            else:
                self._call(chain, action, work)
                output = self._checked_output(action)
        except Suspend as suspend:
            return self._suspended(work, action, suspend, started_at, started)
        except BaseException as exc:  # SystemExit in a step must not kill the worker
            output = self._salvaged_output(action, work)
            return self._done(work, StepState.ERROR, output, exc, started_at, started)
        return self._done(work, _final_state(work), output, None, started_at, started)

    async def run_async(self, work: Work) -> StepDone:
        with self._deadline(work), self.observe.step(work) as seen:
            return seen(await self._run_async(work))

    async def _run_async(self, work: Work) -> StepDone:
        started_at, started = datetime.now(UTC), time.monotonic()
        action: Action | None = None
        try:
            action, chain = self._prepare(work)
            result = self._call(chain, action, work)
            while inspect.isawaitable(result):
                result = await result
            output = self._checked_output(action)
        except Suspend as suspend:
            return self._suspended(work, action, suspend, started_at, started)
        except Exception as exc:
            output = self._salvaged_output(action, work)
            return self._done(work, StepState.ERROR, output, exc, started_at, started)
        return self._done(work, _final_state(work), output, None, started_at, started)

    def run_on_loop(
        self, work: Work, loop: asyncio.AbstractEventLoop, done: Callable[[StepDone], None]
    ) -> concurrent.futures.Future[StepDone]:
        """Run an async phase on ``loop``; ``done`` gets its report, unless it was
        cancelled (its ``run_timeout``: the core already failed the attempt)."""
        future = asyncio.run_coroutine_threadsafe(self.run_async(work), loop)
        future.add_done_callback(lambda f: None if f.cancelled() else done(f.result()))
        return future

    def failed(self, work: Work, exc: BaseException) -> StepDone:
        """The report of a step whose run failed outside the action (a bug in the engine)."""
        now = datetime.now(UTC)
        return self._done(work, StepState.ERROR, work.output, exc, now, time.monotonic())

    # -- internals --------------------------------------------------------------

    @contextmanager
    def _deadline(self, work: Work) -> Iterator[None]:
        """Tell the core (:class:`RunTimeout`) if this attempt of ``run`` outlives its
        action's ``run_timeout``: counted from its start, not from its hand-out."""
        seconds = None
        if work.phase is Phase.RUN and not _is_cancel(work):
            try:
                seconds = registry.lookup(work.action_class).run_timeout
            except DynflowError:
                seconds = None
        if not seconds:
            yield
            return
        message = RunTimeout(work.execution_plan_id, work.step_id, work.sequence, work.run, seconds)
        timer = self.world.clock.schedule(seconds, lambda: self.report(message))
        try:
            yield
        finally:
            timer.cancel()

    def _suspended(
        self,
        work: Work,
        action: Action | None,
        suspend: Suspend,
        started_at: datetime,
        started: float,
    ) -> StepDone:
        try:
            assert action is not None
            output = self._checked_output(action)
            if suspend.callback is not None:
                suspend.callback(SuspendedAction(self.world, work.execution_plan_id, work.step_id))
        except Exception as exc:
            output = self._salvaged_output(action, work)
            return self._done(work, StepState.ERROR, output, exc, started_at, started)
        return self._done(work, StepState.SUSPENDED, output, None, started_at, started)

    def _prepare(self, work: Work) -> tuple[Action, list[type[Middleware]]]:
        cls = registry.lookup(work.action_class)
        context = PhaseContext(
            self.world,
            work.execution_plan_id,
            work.phase,
            step_id=work.step_id,
            extra={"sequence": work.sequence},
            report_progress=lambda done: self.report(
                Progress(work.execution_plan_id, work.step_id, done, work.run)
            ),
        )
        action = cls(context, work.action_id, input=freeze(work.input), output=dict(work.output))
        return action, [*self.middleware(), *cls.middleware]

    def _call(self, chain: list[type[Middleware]], action: Action, work: Work) -> Any:
        if _is_cancel(work):
            return action.cancel()  # type: ignore[attr-defined]
        if work.phase is Phase.RUN:

            def phase(*args: Any) -> Any:
                _check_deferred_input(action)
                return call_chain(chain, action, "run", action.run, *args)

            args: tuple[Any, ...] = (work.event,) if work.event is not None else ()
            return call_chain(chain, action, "run_phase", phase, *args)
        if work.phase is Phase.REVERT:
            event: tuple[Any, ...] = (work.event,) if work.event is not None else ()
            return call_chain(
                chain,
                action,
                "revert_phase",
                lambda: call_chain(chain, action, "revert", action.revert, *event),
            )
        return call_chain(
            chain,
            action,
            "finalize_phase",
            lambda: call_chain(chain, action, "finalize", action.finalize),
        )

    def _checked_output(self, action: Action) -> dict[str, Any]:
        output: dict[str, Any] = to_json_value(action._output, f"{type(action).__name__} output")
        check_size(output, self.max_value_bytes, f"{type(action).__name__} output")
        return output

    def _salvaged_output(self, action: Action | None, work: Work) -> dict[str, Any]:
        """What a failed step wrote to its output is kept (e.g. a polled task's id),
        unless it is not JSON or too large: then it stays as before the step ran."""
        if action is None:
            return work.output
        try:
            return self._checked_output(action)
        except DynflowError:
            return work.output

    def _done(
        self,
        work: Work,
        state: StepState,
        output: dict[str, Any],
        exc: BaseException | None,
        started_at: datetime,
        started: float,
    ) -> StepDone:
        return StepDone(
            execution_plan_id=work.execution_plan_id,
            step_id=work.step_id,
            state=state,
            output=output,
            error=StepError.from_exception(exc) if exc is not None else None,
            started_at=started_at,
            ended_at=datetime.now(UTC),
            execution_time=time.monotonic() - started,
            run=work.run,
            retry=exc is not None and _retries(work, exc),
            sequence=work.sequence,
        )


def _retries(work: Work, exc: BaseException) -> bool:
    """Whether the action's ``retry`` covers ``exc`` (decided here: the core sees the
    error's class name only)."""
    if work.phase is not Phase.RUN or _is_cancel(work):
        return False
    try:
        retry = registry.lookup(work.action_class).retry
    except DynflowError:
        return False
    return retry is not None and retry.retries(exc)


def _is_cancel(work: Work) -> bool:
    return work.phase is Phase.RUN and is_engine_event(work.event, CANCEL)


def _final_state(work: Work) -> StepState:
    return StepState.CANCELLED if _is_cancel(work) else StepState.SUCCESS


def _check_deferred_input(action: Action) -> None:
    """Inputs holding output references are validated once resolved, before ``run``."""
    model = type(action).Input
    if model is None:
        return
    from pydantic import ValidationError

    try:
        model.model_validate(_thaw(action.input))
    except ValidationError as exc:
        raise DynflowError(f"{type(action).__name__} input is invalid: {exc}") from None


def _thaw(value: Any) -> Any:
    return to_json_value(value, "input")


def _drop(progress: Progress | RunTimeout) -> None:
    """Progress reported before an executor took the runner: nobody listens yet."""
