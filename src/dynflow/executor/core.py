"""The executor core: owns the running plans, applies results, decides, persists.

It is driven by messages (from the world and from workers), handled one at a
time by a single thread. Changes accumulate in one :class:`Changes` batch;
``flush`` commits it and only then releases the work and the futures that
depend on it, so several plans' state changes share one commit.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dynflow.action import registry
from dynflow.action.base import Rescue, combine_rescue
from dynflow.action.cancellable import Cancellable
from dynflow.action.events import CANCEL
from dynflow.action.singleton import SINGLETON_LOCK, Singleton
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.director import Outcome, decide
from dynflow.errors import DynflowError, ExecutionError, NotFound
from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.work import Progress, StepDone, Work
from dynflow.persistence import Persistence
from dynflow.persistence.changes import Changes
from dynflow.serialization import resolve_refs

log = logging.getLogger(__name__)

ABNORMAL = "Abnormal termination (previous state: {state})"


@dataclass(frozen=True)
class Start:
    plan: ExecutionPlan
    future: Future[ExecutionPlan]
    #: set when recovering the plan of a world that died while executing it
    recovered_from: str | None = None
    recovering: bool = False


@dataclass(frozen=True)
class Halt:
    execution_plan_id: str
    future: Future[ExecutionPlan]


@dataclass(frozen=True)
class Event:
    """Deliver ``payload`` to a step: ``run(event=payload)`` once it is suspended."""

    execution_plan_id: str
    step_id: int
    payload: Any
    future: Future[Any]
    #: drop the event silently (future resolved with False) if the step cannot take it
    optional: bool = False


@dataclass(frozen=True)
class StepTimeout:
    """Fail the step if it is still suspended since hand-out ``sequence``."""

    execution_plan_id: str
    step_id: int
    sequence: int
    seconds: float


@dataclass(frozen=True)
class CancelPlan:
    """Send the cancel event to every running or suspended cancellable step."""

    execution_plan_id: str
    reply: Future[list[Future[Any]]]


@dataclass(frozen=True)
class Terminate:
    future: Future[None]


@dataclass(frozen=True)
class Abandon:
    """Terminate now: steps still running are abandoned as abnormally terminated."""


Message = (
    Start | StepDone | Progress | Event | StepTimeout | CancelPlan | Halt | Terminate | Abandon
)


class LockLost(ExecutionError):
    """This world was declared dead and another world took the plan over (and answers
    the request that started it)."""


@dataclass
class _Outbox:
    """What a commit releases: work for the workers, and callbacks (by plan, if any)."""

    work: list[Work] = field(default_factory=list)
    callbacks: list[tuple[str | None, Callable[[], None]]] = field(default_factory=list)
    #: plans that stopped or paused in this batch (no longer in ``ExecutorCore.plans``)
    released: dict[str, PlanRuntime] = field(default_factory=dict)

    def without(self, plan_ids: set[str]) -> _Outbox:
        return _Outbox(
            [w for w in self.work if w.execution_plan_id not in plan_ids],
            [(p, c) for p, c in self.callbacks if p not in plan_ids],
        )


class ExecutorCore:
    def __init__(
        self,
        world_id: str,
        persistence: Persistence,
        *,
        auto_rescue: bool = True,
        queues: Iterable[str] = ("default",),
    ) -> None:
        self.world_id = world_id
        self.persistence = persistence
        self.auto_rescue = auto_rescue
        self.queues = frozenset(queues)
        self.plans: dict[str, PlanRuntime] = {}
        self.changes = Changes()
        self._out = _Outbox()
        self.terminating: Future[None] | None = None
        #: plans paused (without failures) because this executor terminated
        self.paused_by_termination: list[str] = []
        #: called with the plan, after the commit, whenever a plan stops or pauses here
        self.on_finished: Callable[[ExecutionPlan], None] | None = None

    @property
    def terminated(self) -> bool:
        return self.terminating is not None and not self.plans

    # -- message handling -----------------------------------------------------------

    def handle(self, message: Message) -> None:
        match message:
            case StepDone():
                self._step_done(message)
            case Progress(plan_id, step_id, done):
                runtime = self.plans.get(plan_id)
                if runtime is not None and step_id in runtime.steps:
                    step = runtime.steps[step_id]
                    runtime.set_step(step, step.state, progress_done=done)
            case Start(plan, future, recovered_from, recovering):
                try:
                    self._start(plan, future, recovered_from, recovering)
                except Exception as exc:  # never keep a plan we could not start
                    log.exception("cannot start execution plan %s", plan.id)
                    self.plans.pop(plan.id, None)
                    self.changes.drop_plan(plan.id)
                    self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
                    self._fail(future, ExecutionError(f"cannot start plan {plan.id}: {exc}"))
            case Event():
                self._event(message)
            case StepTimeout():
                self._timeout(message)
            case CancelPlan(plan_id, reply):
                self._cancel(plan_id, reply)
            case Halt(plan_id, future):
                self._halt(plan_id, future)
            case Terminate(future):
                self.terminating = future
                for runtime in list(self.plans.values()):
                    self._advance(runtime)
                self._maybe_terminated()
            case Abandon():
                for runtime in list(self.plans.values()):
                    self._abandon_running(runtime)
                    self._pause(runtime)
                self._maybe_terminated()

    def flush(self) -> tuple[list[Work], list[Callable[[], None]]]:
        """Commit the batch; return the work and callbacks it released.

        Fencing: the changes of a plan are written only while this world still holds
        its execution lock. A plan whose lock is gone (this world was declared dead
        while only slow) is dropped here without any write: another world owns it.
        """
        fenced: set[str] = set()
        if self.changes:
            fenced = self.persistence.apply_fenced(self.changes, self.world_id)
            self.changes.clear()
        out, self._out = self._out, _Outbox()
        if fenced:
            released = out.released
            out = out.without(fenced)
            for plan_id in fenced:
                self._lose(plan_id, released.get(plan_id))
        return out.work, [callback for _, callback in out.callbacks]

    def _lose(self, plan_id: str, released: PlanRuntime | None = None) -> None:
        # a plan that stopped or paused in the fenced batch is no longer in self.plans:
        # its futures (whose callbacks were dropped) are rejected all the same
        runtime = self.plans.pop(plan_id, None) or released
        if runtime is None:
            return
        if plan_id in self.paused_by_termination:  # not ours to hand over
            self.paused_by_termination.remove(plan_id)
        log.error(
            "world %s no longer holds the execution lock of plan %s: it stops executing it "
            "(another world took it over)",
            self.world_id,
            plan_id,
        )
        error = LockLost(
            f"world {self.world_id} lost the execution lock of plan {plan_id}: it was "
            "declared dead and another world continues the plan"
        )
        for future in runtime.futures:
            _reject(future, error)
        for waiting in runtime.events.values():
            for event in waiting:
                _reject(event.future, error)
        if self.terminating is not None and not self.plans:
            _resolve(self.terminating, None)

    def _later(self, callback: Callable[[], None], plan_id: str | None = None) -> None:
        """Run ``callback`` after the next commit (dropped if the plan is fenced off)."""
        self._out.callbacks.append((plan_id, callback))

    # -- starting ---------------------------------------------------------------------

    def _start(
        self,
        plan: ExecutionPlan,
        future: Future[ExecutionPlan],
        recovered_from: str | None = None,
        recovering: bool = False,
    ) -> None:
        if self.terminating is not None:
            self._fail(future, ExecutionError(f"world {self.world_id} is terminating"))
            self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
            return
        if plan.id in self.plans:
            self._fail(future, ExecutionError(f"execution plan {plan.id} is already running"))
            return
        if plan.state not in (PlanState.PLANNED, PlanState.PAUSED, PlanState.RUNNING):
            self._fail(
                future,
                ExecutionError(
                    f"execution plan {plan.id} is {plan.state}/{plan.result}: nothing to execute"
                ),
            )
            self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
            return
        runtime = PlanRuntime.from_plan(plan, self.changes)
        self.plans[plan.id] = runtime
        runtime.futures.append(future)
        if recovering:
            # the dead executor's failures stand: its interrupted steps fail too (unless
            # idempotent), and the plan pauses or is rescued like after any failure
            runtime.record("terminate execution", recovered_from)
            for step in runtime.steps.values():
                if step.state is StepState.RUNNING:  # left running by a dead executor
                    self._abnormal(runtime, step)
        else:  # executing or resuming: failed steps run again
            for step in runtime.steps.values():
                if step.state is StepState.ERROR and step.phase is not Phase.PLAN:
                    runtime.set_step(step, StepState.PENDING, error=None)
        runtime.set_state(
            PlanState.RUNNING,
            PlanResult.PENDING,
            started_at=runtime.plan.started_at or now(),
            ended_at=None,
        )
        runtime.record("start execution", self.world_id)
        for step in runtime.steps.values():
            if step.state is StepState.SUSPENDED:  # the timers of its last executor are gone
                resume_event = _action_attribute(runtime, step.action_id, "resume_event")
                if resume_event is not None:
                    runtime.events.setdefault(step.id, deque()).append(
                        Event(runtime.id, step.id, resume_event, Future(), optional=True)
                    )
                    self._deliver_next(runtime, step.id)
        self._advance(runtime)

    def _abnormal(self, runtime: PlanRuntime, step: Any) -> None:
        action_class = runtime.actions[step.action_id].action_class
        message = ABNORMAL.format(state=step.state)
        runtime.set_step(
            step,
            StepState.ERROR,
            error=StepError("dynflow.errors.ExecutionError", message),
            ended_at=now(),
        )
        if _idempotent(action_class):  # interrupted, then run again at once
            runtime.set_step(step, StepState.PENDING, error=None, ended_at=None)

    # -- results ----------------------------------------------------------------------

    def _step_done(self, done: StepDone) -> None:
        runtime = self.plans.get(done.execution_plan_id)
        if runtime is None or done.step_id in runtime.abandoned:
            if runtime is not None:
                runtime.abandoned.discard(done.step_id)
            self._maybe_terminated()
            return
        step = runtime.steps[done.step_id]
        if done.output != runtime.actions[step.action_id].output:
            runtime.set_output(step.action_id, done.output)
        if done.state is StepState.SUSPENDED:
            runtime.set_step(
                step,
                StepState.SUSPENDED,
                execution_time=step.execution_time + done.execution_time,
            )
            self._deliver_next(runtime, step.id)
            self._advance(runtime)
            return
        self._drop_events(runtime, step.id, f"step {step.id} ended {done.state}")
        runtime.set_step(
            step,
            done.state,
            error=done.error,
            ended_at=done.ended_at,
            execution_time=step.execution_time + done.execution_time,
            real_time=(done.ended_at - (step.started_at or done.started_at)).total_seconds(),
            progress_done=1.0 if done.state is StepState.SUCCESS else step.progress_done,
        )
        self._advance(runtime)

    # -- events -----------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        runtime = self.plans.get(event.execution_plan_id)
        if runtime is None:
            self._refuse(
                event,
                NotFound(
                    f"execution plan {event.execution_plan_id} is not running in world "
                    f"{self.world_id}"
                ),
            )
            return
        step = runtime.steps.get(event.step_id)
        if step is None:
            self._refuse(
                event, NotFound(f"execution plan {runtime.id} has no step {event.step_id}")
            )
            return
        if step.state not in (StepState.SUSPENDED, StepState.RUNNING):
            self._refuse(
                event,
                ExecutionError(
                    f"step {step.id} of execution plan {runtime.id} is {step.state}, not "
                    "suspended: the event was not delivered"
                ),
            )
            return
        runtime.events.setdefault(step.id, deque()).append(event)
        self._deliver_next(runtime, step.id)
        self._advance(runtime)

    def _deliver_next(self, runtime: PlanRuntime, step_id: int) -> None:
        """Hand the oldest waiting event to its step if the step is suspended."""
        waiting = runtime.events.get(step_id)
        if not waiting or runtime.steps[step_id].state is not StepState.SUSPENDED:
            return
        if self.terminating is not None:
            self._drop_events(runtime, step_id, f"world {self.world_id} is terminating")
            return
        event = waiting.popleft()
        if self._dispatch(runtime, step_id, event.payload):
            self._later(partial(_resolve, event.future, True), runtime.id)
        else:
            self._refuse(event, ExecutionError(str(runtime.steps[step_id].error)))

    def _drop_events(self, runtime: PlanRuntime, step_id: int, why: str) -> None:
        for event in runtime.events.pop(step_id, ()):
            self._refuse(event, ExecutionError(f"the event was not delivered: {why}"))

    def _refuse(self, event: Event, error: Exception) -> None:
        if event.optional:
            self._later(partial(_resolve, event.future, False), event.execution_plan_id)
        else:
            self._fail(event.future, error)

    def _timeout(self, timeout: StepTimeout) -> None:
        runtime = self.plans.get(timeout.execution_plan_id)
        if runtime is None or timeout.step_id not in runtime.steps:
            return
        step = runtime.steps[timeout.step_id]
        if step.state is not StepState.SUSPENDED:
            return
        if runtime.sequences.get(step.id, 0) != timeout.sequence:
            return  # an event came since the timeout was scheduled
        self._drop_events(runtime, step.id, "the step timed out")
        runtime.set_step(
            step,
            StepState.ERROR,
            ended_at=now(),
            error=StepError(
                "TimeoutError",
                f"step {step.id} timed out: no event within {timeout.seconds:g} s",
            ),
        )
        self._advance(runtime)

    def _cancel(self, plan_id: str, reply: Future[list[Future[Any]]]) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is None:
            self._fail(reply, ExecutionError(f"execution plan {plan_id} is not running here"))
            return
        futures: list[Future[Any]] = []
        for step in runtime.steps.values():
            if step.state not in (StepState.RUNNING, StepState.SUSPENDED):
                continue
            cls = _action_class(runtime, step.action_id)
            if cls is None or not issubclass(cls, Cancellable):
                continue
            future: Future[Any] = Future()
            futures.append(future)
            runtime.events.setdefault(step.id, deque()).append(
                Event(plan_id, step.id, CANCEL, future)
            )
            self._deliver_next(runtime, step.id)
        self._later(partial(_resolve, reply, futures), plan_id)
        self._advance(runtime)

    # -- deciding ---------------------------------------------------------------------

    def _advance(self, runtime: PlanRuntime) -> None:
        while True:
            decision = decide(runtime.shape, runtime.states())
            match decision.outcome:
                case Outcome.CONTINUE:
                    if self.terminating is not None:
                        if not self._has_running(runtime):
                            self._pause(runtime)
                        return
                    failed = [s for s in decision.ready if not self._dispatch(runtime, s)]
                    if failed:  # refused before running (queue, reference): decide again
                        continue
                    return
                case Outcome.FINISHED:
                    self._finish(runtime)
                    return
                case Outcome.FAILED:
                    if self._rescue(runtime):
                        continue
                    return
                case Outcome.CANCELLED:
                    self._stop(runtime, PlanResult.CANCELLED, "finish execution")
                    return
                case Outcome.STUCK:
                    runtime.record("stuck: no step can run", self.world_id)
                    self._pause(runtime, PlanResult.ERROR)
                    return

    def _rescue(self, runtime: PlanRuntime) -> bool:
        """Apply the rescue strategy to a failed plan; True if it should go on."""
        failed = [s for s in runtime.steps.values() if s.state is StepState.ERROR]
        strategy = Rescue.PAUSE
        if self.auto_rescue and self.terminating is None:
            strategy = combine_rescue([_rescue_strategy(runtime, s.action_id) for s in failed])
        if strategy is Rescue.SKIP:
            for step in failed:
                skip_step(runtime, step.id)
            return True
        if strategy is Rescue.FAIL:
            self._stop(runtime, PlanResult.ERROR, "finish execution")
            return False
        self._pause(runtime, PlanResult.ERROR)
        return False

    def _dispatch(self, runtime: PlanRuntime, step_id: int, event: Any = None) -> bool:
        """Hand the step to a worker; False if it failed at once (it is then ``error``)."""
        step = runtime.steps[step_id]
        action = runtime.actions[step.action_id]
        runtime.set_step(
            step, StepState.RUNNING, started_at=step.started_at or now(), ended_at=None
        )
        try:
            if step.queue not in self.queues:
                raise ExecutionError(
                    f"queue {step.queue!r} is not served by world {self.world_id}: configure it "
                    f"with World(queues={{{step.queue!r}: N}})"
                )
            value = resolve_refs(action.input, lambda aid: runtime.actions[aid].output)
        except (DynflowError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            runtime.set_step(
                step,
                StepState.ERROR,
                ended_at=now(),
                error=StepError(StepError.from_exception(exc).exception_class, message),
            )
            return False
        self._out.work.append(
            Work(
                execution_plan_id=runtime.id,
                step_id=step.id,
                action_id=action.id,
                action_class=action.action_class,
                phase=step.phase,
                queue=step.queue,
                input=value,
                output=dict(action.output),
                event=event,
                sequence=runtime.next_sequence(step.id),
            )
        )
        return True

    # -- ending -----------------------------------------------------------------------

    def _finish(self, runtime: PlanRuntime) -> None:
        skipped = any(s.state is StepState.SKIPPED for s in runtime.steps.values())
        self._stop(
            runtime, PlanResult.WARNING if skipped else PlanResult.SUCCESS, "finish execution"
        )

    def _stop(self, runtime: PlanRuntime, result: PlanResult, event: str) -> None:
        runtime.set_state(
            PlanState.STOPPED, result, ended_at=now(), real_time=runtime.accumulate_real_time()
        )
        runtime.record(event, self.world_id)
        self.changes.released_locks.extend(singleton_locks(runtime))
        self._release(runtime)

    def _pause(self, runtime: PlanRuntime, result: PlanResult | None = None) -> None:
        errors = any(s.state is StepState.ERROR for s in runtime.steps.values())
        runtime.set_state(
            PlanState.PAUSED,
            result or (PlanResult.ERROR if errors else PlanResult.PENDING),
            real_time=runtime.accumulate_real_time(),
        )
        runtime.record("pause execution", self.world_id)
        if self.terminating is not None and runtime.plan.result is PlanResult.PENDING:
            self.paused_by_termination.append(runtime.id)
        self._release(runtime)

    def _release(self, runtime: PlanRuntime) -> None:
        del self.plans[runtime.id]
        self._out.released[runtime.id] = runtime
        self.changes.released_locks.append((EXECUTION_LOCK, runtime.id, self.world_id))
        snapshot = runtime.snapshot()
        for future in runtime.futures:
            self._later(partial(_resolve, future, snapshot), runtime.id)
        if self.on_finished is not None:
            self._later(partial(self.on_finished, snapshot), runtime.id)
        self._maybe_terminated()

    def _halt(self, plan_id: str, future: Future[ExecutionPlan]) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is None:
            self._fail(future, ExecutionError(f"execution plan {plan_id} is not running here"))
            return
        self._abandon_running(runtime, "halted while running")
        runtime.futures.append(future)
        self._stop(runtime, PlanResult.ERROR, "halt execution")

    def _abandon_running(self, runtime: PlanRuntime, why: str | None = None) -> None:
        for step in runtime.steps.values():
            if step.state is StepState.SUSPENDED and why is not None:  # halted
                self._drop_events(runtime, step.id, "the plan was halted")
                runtime.set_step(
                    step,
                    StepState.ERROR,
                    ended_at=now(),
                    error=StepError("dynflow.errors.ExecutionError", why),
                )
            if step.state is StepState.RUNNING:
                runtime.abandoned.add(step.id)
                message = why or ABNORMAL.format(state=step.state)
                self._drop_events(runtime, step.id, message)  # waiting for it to suspend
                runtime.set_step(
                    step,
                    StepState.ERROR,
                    ended_at=now(),
                    error=StepError("dynflow.errors.ExecutionError", message),
                )

    def _has_running(self, runtime: PlanRuntime) -> bool:
        return any(s.state is StepState.RUNNING for s in runtime.steps.values())

    def _maybe_terminated(self) -> None:
        future = self.terminating
        if future is not None and not self.plans and not future.done():
            self._later(partial(_resolve, future, None))

    def _fail(self, future: Future[Any], error: Exception) -> None:
        self._later(partial(_reject, future, error))


class ExecutorFront:
    """Requests to an executor, as messages to its core; subclasses deliver them."""

    core: ExecutorCore

    def post(self, message: Message) -> None:
        raise NotImplementedError

    def execute(self, plan: ExecutionPlan) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Start(plan, future))
        return future

    def recover(
        self, plan: ExecutionPlan, dead_world: str | None, recovering: bool
    ) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Start(plan, future, dead_world, recovering))
        return future

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(Halt(execution_plan_id, future))
        return future

    def running(self, execution_plan_id: str) -> bool:
        return execution_plan_id in self.core.plans

    def paused_by_termination(self) -> list[str]:
        return list(self.core.paused_by_termination)

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any, optional: bool
    ) -> Future[Any]:
        future: Future[Any] = Future()
        self.post(Event(execution_plan_id, step_id, payload, future, optional))
        return future

    def cancel(self, execution_plan_id: str) -> Future[list[Future[Any]]]:
        reply: Future[list[Future[Any]]] = Future()
        self.post(CancelPlan(execution_plan_id, reply))
        return reply

    def timeout(self, execution_plan_id: str, step_id: int, sequence: int, seconds: float) -> None:
        self.post(StepTimeout(execution_plan_id, step_id, sequence, seconds))


def _action_class(runtime: PlanRuntime, action_id: int) -> type[Any] | None:
    return _lookup(runtime.actions[action_id].action_class)


def _action_attribute(runtime: PlanRuntime, action_id: int, name: str) -> Any:
    return getattr(_action_class(runtime, action_id), name, None)


def singleton_locks(runtime: PlanRuntime) -> list[tuple[str, str, str]]:
    """The singleton locks a stopping plan releases: (class, action class name, plan id)."""
    names = {a.action_class for a in runtime.actions.values()}
    return [
        (SINGLETON_LOCK, name, runtime.id)
        for name in sorted(names)
        if (cls := _lookup(name)) is not None and issubclass(cls, Singleton)
    ]


def _lookup(name: str) -> type[Any] | None:
    try:
        return registry.lookup(name)
    except DynflowError:
        return None


def skip_step(runtime: PlanRuntime, step_id: int) -> None:
    """Mark a failed step skipped, and pending steps that need its output with it."""
    step = runtime.steps[step_id]
    runtime.set_step(step, StepState.SKIPPED, ended_at=now())
    for dependent in sorted(runtime.shape.dependents(step_id)):
        other = runtime.steps[dependent]
        if other.state in (StepState.PENDING, StepState.ERROR):
            runtime.set_step(other, StepState.SKIPPED)


def _rescue_strategy(runtime: PlanRuntime, action_id: int) -> Rescue:
    try:
        return registry.lookup(runtime.actions[action_id].action_class).rescue_strategy
    except DynflowError:
        return Rescue.PAUSE


def _idempotent(action_class: str) -> bool:
    try:
        return registry.lookup(action_class).idempotent
    except DynflowError:
        return False


def _resolve(future: Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: Future[Any], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
