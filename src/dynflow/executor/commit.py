"""How the executor core commits: its changes accumulate in one batch; ``flush`` writes
the batch fenced by the execution locks, and only then releases the work and the
callbacks that depend on it, so several plans' state changes share one commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dynflow.errors import ExecutionError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor.messages import Disown
from dynflow.executor.runtime import PlanRuntime
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

    def without(self, plan_ids: set[str]) -> _Released:
        return _Released(
            [w for w in self.work if w.execution_plan_id not in plan_ids],
            [(p, c) for p, c in self.callbacks if p not in plan_ids],
        )


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
        self.terminating: Future[None] | None = None
        #: plans paused (without failures) because this executor terminated
        self.paused_by_termination: list[str] = []
        #: called with the plan, after the commit, whenever a plan stops or pauses here
        self.on_finished: Callable[[ExecutionPlan], None] | None = None

    @property
    def terminated(self) -> bool:
        return self.terminating is not None and not self.plans

    def flush(self) -> tuple[list[Work], list[Callable[[], None]]]:
        """Commit the batch; return the work and callbacks it released.

        Fencing: the changes of a plan are written only while this world still holds
        its execution lock, under its current registration. A plan whose lock is gone
        (this world was declared dead while only slow), or whose world record names
        another registration, is dropped here without any write: another world owns it.
        """
        fenced: set[str] = set()
        if self.changes:
            fenced = self.persistence.apply_fenced(self.changes, self.world_id, self.registration())
            self.changes.clear()
        out, self._out = self._out, _Released()
        if fenced:
            let_go = out.plans
            out = out.without(fenced)
            for plan_id in fenced:
                self._lose(plan_id, let_go.get(plan_id))
        return out.work, [callback for _, callback in out.callbacks]

    def _lose(self, plan_id: str, let_go: PlanRuntime | None = None) -> None:
        # a plan let go of in the fenced batch is no longer in self.plans:
        # its futures (whose callbacks were dropped) are rejected all the same
        runtime = self.plans.pop(plan_id, None) or let_go
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
        for plan_id, runtime in lost.items():
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
        """Resolve the plan's futures with it once committed (rejected if fenced off)."""
        self._out.plans[runtime.id] = runtime
        snapshot = runtime.snapshot()
        for future in runtime.futures:
            self._later(partial(resolve, future, snapshot), runtime.id)
        return snapshot

    def _maybe_terminated(self) -> None:
        future = self.terminating
        if future is not None and not self.plans and not future.done():
            self._later(partial(resolve, future, None))
