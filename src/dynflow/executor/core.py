"""The executor core: the state machine of the plans a world executes.

Driven by messages (from the world and from workers), handled one at a time by a
single thread; it applies results, decides what runs next, and commits in batches
(:mod:`dynflow.executor.commit`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import Any

from dynflow.action.base import Rescue
from dynflow.action.registry import class_name
from dynflow.clock import Clock, ManualClock
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.director import Outcome
from dynflow.errors import DynflowError, ExecutionError, NotFound
from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.executor import cancel, deadlines, held, limits, policy, retry, revert, timeouts
from dynflow.executor.commit import Committer
from dynflow.executor.messages import (
    Abandon,
    Adopt,
    CancelSteps,
    DeliverEvent,
    Disown,
    HaltPlan,
    LimitGranted,
    Message,
    RetryDue,
    RetryLimits,
    RevertPlan,
    RunTimeout,
    SkipStep,
    Start,
    StepTimeout,
    Terminate,
    plan_of,
)
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.work import Progress, StepDone, Work
from dynflow.futures import resolve
from dynflow.persistence import PersistencePort
from dynflow.serialization import resolve_refs

log = logging.getLogger(__name__)

_EXECUTION_ERROR = class_name(ExecutionError)


class ExecutorCore(Committer):
    """The state machine of the plans this world executes; ``handle`` is its one entry."""

    def __init__(
        self,
        world_id: str,
        persistence: PersistencePort,
        registration: Callable[[], str],
        *,
        auto_rescue: bool = True,
        queues: Iterable[str] = ("default",),
        clock: Clock | None = None,
    ) -> None:
        super().__init__(world_id, persistence, registration)
        self.auto_rescue = auto_rescue
        self.queues = frozenset(queues)
        #: the world's clock, and its executor's ``post`` (set by the executor): retries
        self.clock: Clock = clock or ManualClock()
        self.post: Callable[[Message], None] = self.handle
        #: give back the worker of a timed-out hand-out (plan, step, run, sequence)
        self.release: Callable[[str, int, int, int], None] = lambda *key: None
        gate = limits.LimitGate(world_id, persistence.limits, registration, self.clock, self.handle)
        self.limits = limits.LimitBook(gate)
        self.forget = partial(limits.forget, self)

    # -- message handling -----------------------------------------------------------

    def handle(self, message: Message) -> None:
        try:
            self._handle(message)
        except Exception as exc:  # one plan's failure must not stop the others
            plan_id = plan_of(message)
            if plan_id not in self.plans and plan_id not in self.adopted:
                raise
            self.poisoned[plan_id] = exc  # paused as last committed, at the next flush

    def _handle(self, message: Message) -> None:
        match message:
            case StepDone():
                self._step_done(message)
            case Progress(plan_id, step_id, done, run):
                runtime = self.plans.get(plan_id)
                if runtime is not None and runtime.run == run and step_id in runtime.steps:
                    step = runtime.steps[step_id]
                    runtime.set_step(step, step.state, progress_done=done)
            case Start(plan, future):
                try:
                    self._start(message)
                except Exception as exc:  # never keep a plan we could not start
                    log.exception("cannot start execution plan %s", plan.id)
                    self.plans.pop(plan.id, None)
                    self.changes.drop_plan(plan.id)
                    self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
                    self._fail(future, ExecutionError(f"cannot start plan {plan.id}: {exc}"))
            case DeliverEvent():
                self._event(message)
            case StepTimeout():
                timeouts.suspended_too_long(self, message)
            case RunTimeout():
                timeouts.ran_too_long(self, message)
            case RetryDue():
                retry.due(self, message)
            case LimitGranted():
                limits.granted(self, message)
            case RetryLimits():
                self.limits.gate.poke()
            case CancelSteps(plan_id, reply, deadline):
                cancel.cancel(self, plan_id, reply, deadline)
            case RevertPlan(plan_id, future):
                revert.mark(self, plan_id, future)
            case Adopt(plan, future):
                held.adopt(self, plan, future)
            case HaltPlan(plan_id, future, why):
                self._halt(plan_id, future, why)
            case SkipStep(plan_id, step_id, future):
                held.skip(self, plan_id, step_id, future)
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
            case Disown():
                self._disown(message)

    # -- starting ---------------------------------------------------------------------

    def _start(self, start: Start) -> None:
        plan, future, recovered_from = start.plan, start.future, start.recovered_from
        if self.terminating is not None:
            self._fail(future, ExecutionError(f"world {self.world_id} is terminating"))
            self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
            return
        if plan.id in self.plans:
            # its caller took the lock: the run here had lost it, and is fenced off
            self._fail(future, ExecutionError(f"execution plan {plan.id} is already running"))
            self.changes.released_locks.append((EXECUTION_LOCK, plan.id, self.world_id))
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
        runtime = PlanRuntime.from_plan(plan, self.changes, copy=False)  # handed over
        self.plans[plan.id] = runtime
        runtime.futures.append(future)
        runtime.reply = start.reply
        if start.recovering:
            # the dead executor's failures stand: its interrupted steps fail too (unless
            # idempotent), and the plan pauses or is rescued like after any failure
            runtime.record("terminate execution", recovered_from)
            for step in runtime.steps.values():
                if step.state is StepState.RUNNING:  # left running by a dead executor
                    policy.interrupted(runtime, step)
        elif revert.active(runtime):  # resuming a revert: a failed revert runs again
            revert.resume(runtime)
        else:  # executing or resuming: failed steps run again
            for step in runtime.steps.values():
                if step.state is StepState.ERROR and step.phase is not Phase.PLAN:
                    runtime.set_step(step, StepState.PENDING, error=None, attempts=0)
        runtime.set_state(
            PlanState.RUNNING,
            PlanResult.PENDING,
            started_at=runtime.plan.started_at or now(),
            ended_at=None,
        )
        runtime.record("start execution", self.world_id)
        retry.rearm(self, runtime)
        deadlines.arm(self, runtime)
        for step in runtime.steps.values():
            if step.state is StepState.SUSPENDED:  # the timers of its last executor are gone
                resume_event = policy.action_attribute(runtime, step.action_id, "resume_event")
                if resume_event is not None:
                    runtime.events.setdefault(step.id, deque()).append(
                        DeliverEvent(runtime.id, step.id, resume_event, Future(), optional=True)
                    )
                    self._deliver_next(runtime, step.id)
        self._advance(runtime)

    # -- results ----------------------------------------------------------------------

    def _step_done(self, done: StepDone) -> None:
        runtime = self.plans.get(done.execution_plan_id)
        if runtime is None or runtime.run != done.run:
            log.info(  # e.g. this world was declared dead meanwhile and dropped the plan
                "world %s ignores the result of step %s of plan %s: it no longer runs "
                "the plan as it did when the step started",
                self.world_id,
                done.step_id,
                done.execution_plan_id,
            )
            runtime = None
        elif timeouts.stale(runtime, done):
            runtime = None  # a hand-out that timed out
        if runtime is None or done.step_id in runtime.abandoned:
            if runtime is not None:
                runtime.abandoned.discard(done.step_id)
            self._maybe_terminated()
            return
        step = runtime.steps[done.step_id]
        if done.output != runtime.actions[step.action_id].output:
            runtime.set_output(step.action_id, done.output)
        if step.state is StepState.REVERTING:
            revert.done(self, runtime, step, done)
            self._advance(runtime)
            return
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
        limits.ended(self, runtime, step)
        if retry.attempt_failed(self, runtime, step, done):
            self._advance(runtime)
            return
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

    def _event(self, event: DeliverEvent) -> None:
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
            why = f"execution plan {runtime.id} has no step {event.step_id}"
            self._refuse(event, NotFound(why))
            return
        if step.state not in (StepState.SUSPENDED, StepState.RUNNING) and not revert.takes_events(
            runtime, step
        ):
            self._refuse(
                event,
                ExecutionError(
                    f"step {step.id} of execution plan {runtime.id} is {step.state}, not "
                    "suspended: the event was not delivered"
                ),
            )
            return
        if policy.enqueue(runtime, step.id, event):  # merged with a waiting wake-up
            self._later(partial(resolve, event.future, True), runtime.id)
        self._deliver_next(runtime, step.id)
        self._advance(runtime)

    def _deliver_next(self, runtime: PlanRuntime, step_id: int) -> None:
        """Hand the oldest waiting event to its step if the step is suspended."""
        waiting = runtime.events.get(step_id)
        if waiting and runtime.steps[step_id].state is StepState.REVERTING:
            revert.deliver_next(self, runtime, step_id)  # a revert that suspended
            return
        if not waiting or runtime.steps[step_id].state is not StepState.SUSPENDED:
            return
        if self.terminating is not None:
            self._drop_events(runtime, step_id, f"world {self.world_id} is terminating")
            return
        event = waiting.popleft()
        if self._dispatch(runtime, step_id, event.payload):
            self._later(partial(resolve, event.future, True), runtime.id)
        else:
            self._refuse(event, ExecutionError(str(runtime.steps[step_id].error)))

    def _drop_events(self, runtime: PlanRuntime, step_id: int, why: str) -> None:
        for event in runtime.events.pop(step_id, ()):
            self._refuse(event, ExecutionError(f"the event was not delivered: {why}"))

    def _refuse(self, event: DeliverEvent, error: Exception) -> None:
        if event.optional:
            self._later(partial(resolve, event.future, False), event.execution_plan_id)
        else:
            self._fail(event.future, error)

    # -- deciding ---------------------------------------------------------------------

    def _advance(self, runtime: PlanRuntime) -> None:
        while True:
            if revert.active(runtime):
                revert.advance(self, runtime)
                return
            decision = runtime.readiness.decide()
            match decision.outcome:
                case Outcome.CONTINUE:
                    if self.terminating is not None:
                        if not policy.has_running(runtime):
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
                case Outcome.CANCELLED:  # by the plan's deadline: it failed
                    late = runtime.past_deadline
                    self._stop(
                        runtime,
                        PlanResult.ERROR if late else PlanResult.CANCELLED,
                        "finish execution",
                    )
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
            strategy = policy.rescue_strategy(runtime, failed)
        if strategy is Rescue.SKIP:
            for step in failed:
                policy.skip_step(runtime, step.id)
            return True
        if strategy is Rescue.FAIL:
            self._stop(runtime, PlanResult.ERROR, "finish execution")
            return False
        if strategy is Rescue.REVERT:
            revert.begin(self, runtime)
            return True
        self._pause(runtime, PlanResult.ERROR)
        return False

    def _dispatch(self, runtime: PlanRuntime, step_id: int, event: Any = None) -> bool:
        """Hand the step to a worker; False if it failed at once (it is then ``error``)."""
        step = runtime.steps[step_id]
        if (held := limits.hold(self, runtime, step, event)) is not None:
            return held
        action = runtime.actions[step.action_id]
        runtime.set_step(
            step, StepState.RUNNING, started_at=step.started_at or now(), **retry.handed_out(step)
        )
        try:
            if step.queue not in self.queues:
                raise ExecutionError(
                    f"queue {step.queue!r} is not served by world {self.world_id}: configure it "
                    f"with World(queues={{{step.queue!r}: N}})"
                )
            value = resolve_refs(action.input, lambda aid: runtime.actions[aid].output)
            if value != action.input:
                runtime.set_input(action.id, value)
        except (DynflowError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            runtime.set_step(
                step,
                StepState.ERROR,
                ended_at=now(),
                error=StepError(StepError.from_exception(exc).exception_class, message),
            )
            return False
        self._dispatched(
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
                run=runtime.run,
                priority=runtime.plan.priority,
            )
        )
        return True

    # -- ending -----------------------------------------------------------------------

    def _finish(self, runtime: PlanRuntime) -> None:
        warned = policy.warned(runtime)
        self._stop(
            runtime, PlanResult.WARNING if warned else PlanResult.SUCCESS, "finish execution"
        )

    def _stop(self, runtime: PlanRuntime, result: PlanResult, event: str) -> None:
        ended_at = now()
        runtime.set_state(
            PlanState.STOPPED, result, ended_at=ended_at, real_time=runtime.wall_time(ended_at)
        )
        runtime.record(event, self.world_id)
        self.changes.released_locks.extend(policy.singleton_locks(runtime))
        self._release(runtime)

    def _pause(self, runtime: PlanRuntime, result: PlanResult | None = None) -> None:
        errors = any(s.state is StepState.ERROR for s in runtime.steps.values())
        runtime.set_state(
            PlanState.PAUSED,
            result or (PlanResult.ERROR if errors else PlanResult.PENDING),
            real_time=runtime.wall_time(now()),
        )
        runtime.record("pause execution", self.world_id)
        if self.terminating is not None and runtime.plan.result is PlanResult.PENDING:
            self.paused_by_termination.append(runtime.id)
        self._release(runtime)

    def _release(self, runtime: PlanRuntime) -> None:
        del self.plans[runtime.id]
        self.forget(runtime.id)
        if runtime.id not in self.paused_by_termination:  # kept: the world hands it over
            self.changes.released_locks.append((EXECUTION_LOCK, runtime.id, self.world_id))
        snapshot = self._let_go(runtime)
        if self.on_finished is not None:
            self._later(partial(self.on_finished, snapshot), runtime.id)
        self._maybe_terminated()

    # -- halting ----------------------------------------------------------------------

    def _halt(self, plan_id: str, future: Future[ExecutionPlan], reason: str | None) -> None:
        runtime = self.plans.get(plan_id)
        why = reason or "halted while running"
        if runtime is None and plan_id in self.adopted:
            # not executing: its suspended steps wait for events nobody will deliver
            runtime = self.plans[plan_id] = self.adopted.pop(plan_id)
            why = reason or "halted while suspended"
        if runtime is None:
            self._fail(future, ExecutionError(f"execution plan {plan_id} is not running here"))
            return
        self._abandon_running(runtime, why)
        runtime.futures.append(future)
        self._stop(runtime, PlanResult.ERROR, reason or "halt execution")

    def _abandon_running(self, runtime: PlanRuntime, why: str | None = None) -> None:
        for step in runtime.steps.values():
            if step.state in (StepState.SUSPENDED, StepState.WAITING) and why:  # halted
                self._drop_events(runtime, step.id, "the plan was halted")
                runtime.set_step(
                    step,
                    StepState.ERROR,
                    ended_at=now(),
                    error=StepError(_EXECUTION_ERROR, why),
                )
            if step.state is StepState.RUNNING:
                runtime.abandoned.add(step.id)
                message = why or policy.ABNORMAL.format(state=step.state)
                self._drop_events(runtime, step.id, message)  # waiting for it to suspend
                if why is None:  # left running by termination: as if this world died
                    policy.interrupted(runtime, step)
                    continue
                runtime.set_step(
                    step,
                    StepState.ERROR,
                    ended_at=now(),
                    error=StepError(_EXECUTION_ERROR, message),
                )
