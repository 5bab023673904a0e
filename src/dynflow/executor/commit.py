"""How the executor core commits: its changes accumulate in one batch; ``flush`` writes
the batch fenced by the execution locks, and only then releases the work and the
callbacks that depend on it, so several plans' state changes share one commit.

One bad plan never stops the others: a batch the database refuses (or that fails
for any reason but an outage, :class:`PersistenceError`) is written again plan by
plan, and a plan whose own changes cannot be written, or whose handling raised, is
*quarantined*: its changes are dropped, and it is paused from its last committed
state with the error on its interrupted steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dynflow.errors import ExecutionError, PersistenceError
from dynflow.execution_plan.model import ExecutionPlan, StepError
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.executor.messages import Disown, Reply
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.executor.work import Work
from dynflow.futures import reject, resolve
from dynflow.persistence import PersistencePort
from dynflow.persistence.changes import Changes
from dynflow.persistence.records import EXECUTION_LOCK

log = logging.getLogger(__name__)


class LockLost(ExecutionError):
    """This world was declared dead and another world took the plan over (and answers
    the request that started it)."""


@dataclass
class _Released:
    """What a commit releases: work for the workers, and callbacks (by plan, if any)."""

    work: list[Work] = field(default_factory=list)
    callbacks: list[tuple[str | None, Callable[[], None]]] = field(default_factory=list)
    #: plans the core let go of in this batch: stopped, paused, or handed back
    plans: dict[str, PlanRuntime] = field(default_factory=dict)
    #: the answers this batch writes, by plan (see :class:`Reply`)
    replies: dict[str, Reply] = field(default_factory=dict)

    def without(self, plan_ids: set[str]) -> _Released:
        return _Released(
            [w for w in self.work if w.execution_plan_id not in plan_ids],
            [(p, c) for p, c in self.callbacks if p not in plan_ids],
            {p: r for p, r in self.plans.items() if p not in plan_ids},
            {p: r for p, r in self.replies.items() if p not in plan_ids},
        )


@dataclass
class Batch:
    """One commit of the executor core: its changes, what it releases once they are
    written, and how the write went."""

    changes: Changes
    out: _Released
    #: plans whose handling raised, and their changes (dropped): quarantined
    failed: dict[str, tuple[Exception, Changes]]
    #: plans whose execution lock this world no longer holds: nothing of them written
    fenced: set[str] = field(default_factory=set)
    #: why the database refused the batch whole (it is then written plan by plan)
    refused: Exception | None = None
    written: bool = False


class Committer:
    """The plans an executor core holds, and the commits of their changes; the state
    machine that changes them is :class:`~dynflow.executor.core.ExecutorCore`."""

    def __init__(
        self, world_id: str, persistence: PersistencePort, registration: Callable[[], str]
    ) -> None:
        self.world_id = world_id
        self.persistence = persistence
        #: this world's registration token now (see ``Coordinator.token``): writes are
        #: fenced by it, not by the world id alone
        self.registration = registration
        self.plans: dict[str, PlanRuntime] = {}
        #: plans held without executing them (see :class:`~.messages.Adopt`)
        self.adopted: dict[str, PlanRuntime] = {}
        self.changes = Changes()
        self._out = _Released()
        #: the batch being written, if any (see :meth:`begin_flush`)
        self.committing: Batch | None = None
        self.terminating: Future[None] | None = None
        #: plans paused (without failures) because this executor terminated
        self.paused_by_termination: list[str] = []
        #: called with the plan, after the commit, whenever a plan stops or pauses here
        self.on_finished: Callable[[ExecutionPlan], None] | None = None
        #: called after each batch written (metrics count the commits)
        self.on_commit: Callable[[], None] | None = None
        #: plans whose handling raised: quarantined at the next flush
        self.poisoned: dict[str, Exception] = {}
        #: called with a plan's id when this executor lets go of it (its limits go)
        self.forget: Callable[[str], None] = lambda plan_id: None

    @property
    def terminated(self) -> bool:
        return self.terminating is not None and not self.plans

    def pending(self) -> bool:
        """Something waits for a commit: changes, or work and callbacks to release."""
        out = self._out
        return bool(self.changes or self.poisoned or out.work or out.callbacks or out.plans)

    def flush(self) -> tuple[list[Work], list[Callable[[], None]]]:
        """Commit the batch; return the work and callbacks it released.

        Fencing: the changes of a plan are written only while this world still holds
        its execution lock, under its current registration. A plan whose lock is gone
        (this world was declared dead while only slow), or whose world record names
        another registration, is dropped here without any write: another world owns it.
        Raises :class:`PersistenceError` only (the database is unreachable: the caller
        tries again later, with everything kept).
        """
        batch = self.begin_flush()
        try:
            self.write(batch)
            return self.end_flush(batch)
        except PersistenceError:
            self._keep(batch)
            raise

    # A commit in three parts, so that an executor can handle the next messages while
    # one batch is being written: begin_flush and end_flush run where the core's
    # messages are handled, write may run in another thread (one batch at a time).

    def begin_flush(self) -> Batch:
        """Take the changes made so far, and what their commit releases, as a batch;
        the next changes go to the next batch."""
        failed = {p: (e, self.changes.take(p)) for p, e in self.poisoned.items()}
        self.poisoned.clear()
        batch = Batch(self.changes.detach(), self._out, failed)
        self._out = _Released()
        self.committing = batch
        return batch

    def write(self, batch: Batch) -> None:
        """Write the batch, fenced (see :meth:`flush`). Raises :class:`PersistenceError`
        only: a batch the database refuses is written plan by plan in :meth:`end_flush`."""
        if not batch.changes:
            return
        try:
            batch.fenced |= self.persistence.apply_fenced(
                batch.changes, self.world_id, self.registration()
            )
        except PersistenceError:
            raise
        except Exception as exc:
            batch.refused = exc
        else:
            batch.changes = Changes()
            batch.written = True

    def end_flush(self, batch: Batch) -> tuple[list[Work], list[Callable[[], None]]]:
        """After :meth:`write`: the work and callbacks the batch released. Raises
        :class:`PersistenceError` when the database went away while the batch was
        written plan by plan: write the batch again, then call this again."""
        while batch.refused is not None:
            log.error("cannot write a batch of executor changes (%s): plan by plan", batch.refused)
            batch.refused = None
            self._apply_apart(batch)
            batch.written = True
        self.committing = None
        if batch.written and self.on_commit is not None:
            self.on_commit()
        out = batch.out
        if batch.fenced:
            let_go = out.plans
            out = out.without(batch.fenced)
            for plan_id in batch.fenced:
                self._lose(plan_id, let_go.get(plan_id))
        failed, batch.failed = batch.failed, {}
        for plan_id, (error, dropped) in failed.items():
            out = self._quarantine(plan_id, error, dropped, out)
        for reply in out.replies.values():  # before the futures resolve
            reply.written = True
        return out.work, [callback for _, callback in out.callbacks]

    def _keep(self, batch: Batch) -> None:
        """A batch that could not be written is the start of the next one again."""
        self.committing = None
        batch.changes.absorb(self.changes.detach())
        self.changes.absorb(batch.changes)
        later, self._out = self._out, batch.out
        self._out.work += later.work
        self._out.callbacks += later.callbacks
        self._out.plans.update(later.plans)
        self._out.replies.update(later.replies)
        for plan_id, (error, _) in batch.failed.items():
            self.poisoned.setdefault(plan_id, error)

    def _apply_apart(self, batch: Batch) -> None:
        """Write the batch one plan at a time; the plans refused go to ``batch.failed``."""
        changes = batch.changes
        plan_ids = changes.plan_ids() | {lock[1] for lock in changes.released_locks}
        for plan_id in sorted(plan_ids):
            part = changes.take(plan_id)  # written or failed: out of the batch either way
            try:
                batch.fenced |= self.persistence.apply_fenced(
                    part, self.world_id, self.registration()
                )
            except PersistenceError:
                changes.absorb(part)  # an outage: kept for the retry
                raise
            except Exception as exc:
                batch.failed[plan_id] = (exc, part)
        if changes:  # what belongs to no plan (nothing so far)
            batch.fenced |= self.persistence.apply_fenced(
                changes, self.world_id, self.registration()
            )
        batch.changes = Changes()

    def _purge(self, plan_id: str) -> PlanRuntime | None:
        """Forget what the next batch holds of a plan this executor let go of for good
        (it was fenced off or quarantined while that batch was being prepared); the
        runtime, if the plan stopped in that batch."""
        self.changes.take(plan_id)
        self.poisoned.pop(plan_id, None)
        runtime = self._out.plans.get(plan_id)
        self._out = self._out.without({plan_id})
        return runtime

    def _quarantine(
        self, plan_id: str, error: Exception, dropped: Changes, out: _Released
    ) -> _Released:
        """Pause a plan whose changes could not be written (or whose handling raised)
        from its last committed state: its interrupted steps fail with ``error``."""
        later = self._purge(plan_id)
        runtime = self.plans.pop(plan_id, None) or out.plans.get(plan_id) or later
        runtime = runtime or self.adopted.pop(plan_id, None)
        self.forget(plan_id)
        out = out.without({plan_id})
        log.error(
            "executor of world %s failed on plan %s: pausing the plan",
            self.world_id,
            plan_id,
            exc_info=error,
        )
        futures = [] if runtime is None else list(runtime.futures)
        events = [] if runtime is None else [e for q in runtime.events.values() for e in q]
        try:
            changes = Changes()
            loaded = self.persistence.load_execution_plan(plan_id)
            paused = PlanRuntime.from_plan(loaded, changes, copy=False)
            _fail_interrupted(paused, error, {step for _, step in dropped.steps})
            paused.set_state(PlanState.PAUSED, PlanResult.ERROR, real_time=paused.wall_time(now()))
            paused.record("pause execution", self.world_id)
            changes.released_locks.append((EXECUTION_LOCK, plan_id, self.world_id))
            reply = None if runtime is None else runtime.reply
            _answer(changes, paused.final(), reply)
            lost = self.persistence.apply_fenced(changes, self.world_id, self.registration())
        except Exception as exc:  # not even that can be written: say so to whoever waits
            log.exception("cannot pause execution plan %s either", plan_id)
            for future in futures:
                out.callbacks.append((None, partial(reject, future, exc)))
            lost = set()
            snapshot = None
        else:
            snapshot = None if lost else paused.snapshot()
            if reply is not None and plan_id in changes.answers and not lost:
                reply.written = True
        if lost and runtime is not None:
            self.plans[plan_id] = runtime
            self._lose(plan_id)
        elif snapshot is not None:
            for future in futures:
                out.callbacks.append((None, partial(resolve, future, snapshot)))
            if self.on_finished is not None:
                out.callbacks.append((None, partial(self.on_finished, snapshot)))
        for event in events:
            out.callbacks.append((None, partial(reject, event.future, _not_delivered(error))))
        if self.terminating is not None and not self.plans and not self.terminating.done():
            out.callbacks.append((None, partial(resolve, self.terminating, None)))
        return out

    def _lose(self, plan_id: str, let_go: PlanRuntime | None = None) -> None:
        # a plan let go of in the fenced batch is no longer in self.plans:
        # its futures (whose callbacks were dropped) are rejected all the same
        later = self._purge(plan_id)
        runtime = self.plans.pop(plan_id, None) or let_go or later
        self.forget(plan_id)
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
        self._reject_all(runtime)
        if self.terminating is not None and not self.plans:
            resolve(self.terminating, None)

    def _disown(self, message: Disown) -> None:
        """Drop every plan held here, writing nothing of them: this world was declared
        dead and other worlds took them over. Their locks, if this world took any again
        since, are released; their callers get :class:`LockLost`. After that commit,
        this world registers again (before the core handles anything else)."""
        lost = {**self.adopted, **self.plans}
        self.plans.clear()
        self.adopted.clear()
        out = self._out
        self._out = out.without(set(lost))
        self._out.plans = {p: r for p, r in out.plans.items() if p not in lost}
        if self.committing is not None:  # nothing of theirs is released after its write
            self.committing.out = self.committing.out.without(set(lost))
        for plan_id, runtime in lost.items():
            self.forget(plan_id)
            self.changes.drop_plan(plan_id)
            self.changes.released_locks.append((EXECUTION_LOCK, plan_id, self.world_id))
            if plan_id in self.paused_by_termination:
                self.paused_by_termination.remove(plan_id)
            self._reject_all(runtime)
        if lost:
            log.error(
                "world %s was declared dead: it dropped its %d plan(s) without writing",
                self.world_id,
                len(lost),
            )
        self._maybe_terminated()
        self._later(message.register)
        self._later(partial(resolve, message.future, None))

    def _reject_all(self, runtime: PlanRuntime) -> None:
        error = LockLost(
            f"world {self.world_id} lost the execution lock of plan {runtime.id}: it was "
            "declared dead and another world continues the plan"
        )
        for future in runtime.futures:
            reject(future, error)
        for waiting in runtime.events.values():
            for event in waiting:
                reject(event.future, error)

    def _dispatched(self, work: Work) -> None:
        """Hand ``work`` to the workers after the next commit."""
        self._out.work.append(work)

    def _later(self, callback: Callable[[], None], plan_id: str | None = None) -> None:
        """Run ``callback`` after the next commit (dropped if the plan is fenced off)."""
        self._out.callbacks.append((plan_id, callback))

    def _fail(self, future: Future[Any], error: Exception) -> None:
        self._later(partial(reject, future, error))

    def _let_go(self, runtime: PlanRuntime) -> ExecutionPlan:
        """Resolve the plan's futures with it once committed (rejected if fenced off).
        The runtime is out of ``plans`` (and ``adopted``) for good: nothing changes it
        any more, so its read model is made of its own steps and actions."""
        self._out.plans[runtime.id] = runtime
        snapshot = runtime.final()
        if _answer(self.changes, snapshot, runtime.reply):
            assert runtime.reply is not None
            self._out.replies[runtime.id] = runtime.reply
        for future in runtime.futures:
            self._later(partial(resolve, future, snapshot), runtime.id)
        return snapshot

    def _maybe_terminated(self) -> None:
        future = self.terminating
        if future is not None and not self.plans and not future.done():
            self._later(partial(resolve, future, None))


def _fail_interrupted(runtime: PlanRuntime, error: Exception, touched: set[int]) -> None:
    """Fail the steps the error interrupted: those running as last committed, else
    those the lost changes touched (so that the error is recorded somewhere)."""
    running = [s for s in runtime.steps.values() if s.state is StepState.RUNNING]
    if not running:
        final = (StepState.SUCCESS, StepState.SKIPPED)
        running = [s for i, s in runtime.steps.items() if i in touched and s.state not in final]
    failure = StepError.from_exception(error)
    failure = StepError(
        failure.exception_class,
        f"the executor could not go on with this step: {failure.message}",
        failure.backtrace,
    )
    for step in running:
        runtime.set_step(step, StepState.ERROR, ended_at=now(), error=failure)


def _answer(changes: Changes, plan: ExecutionPlan, reply: Reply | None) -> bool:
    """Add the answer owed for the plan, if any, to ``changes``; True when added (else
    whoever asked is answered after the commit, as without a reply)."""
    if reply is None:
        return False
    try:
        text = reply.answer(plan)
    except Exception:
        log.exception("cannot write the answer for plan %s with its commit", plan.id)
        return False
    if text is not None:
        changes.answers[plan.id] = (reply.receiver_id, text)
    return text is not None


def _not_delivered(error: Exception) -> ExecutionError:
    return ExecutionError(f"the event was not delivered: the plan was paused after {error}")
