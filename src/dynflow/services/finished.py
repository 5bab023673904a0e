"""What follows when a plan stops or pauses: its parent is woken, its children that
never started are halted, and its entry action's hooks run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action import registry
from dynflow.action.base import Action, PhaseContext
from dynflow.action.hooks import hooks_of, kinds_for
from dynflow.action.sub_plans import SUB_PLAN_FINISHED, WithSubPlans
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import Phase, PlanState
from dynflow.executor.deadlines import DEADLINE_EXCEEDED
from dynflow.serialization import freeze

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: seconds a cancelled parent's steps get to take the cancel before its children are cancelled
CANCEL_WAIT = 10.0


class FinishedPlans:
    """Called, after the commit, with every plan that stopped or paused in this world."""

    def __init__(
        self,
        ports: Ports,
        world: ActionWorld,
        *,
        inline: bool = False,
    ) -> None:
        self.world = world
        self.persistence = ports.persistence
        #: run hooks in the thread that stopped the plan (an inline executor's world)
        self._inline = inline
        self._caller_steps: dict[tuple[str, int], int | None] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._stopped = False
        #: told of every plan that stopped or paused here, on the executor's thread
        self.listeners: list[Callable[[ExecutionPlan], None]] = []
        #: told of the id of every plan that stopped here, on a thread of their own
        self.on_stopped: list[Callable[[str], None]] = []

    def __call__(self, plan: ExecutionPlan) -> None:
        for listener in self.listeners:
            listener(plan)
        if plan.state is PlanState.STOPPED:
            for job in self.on_stopped:
                self._soon(partial(job, plan.id))
        if plan.caller_execution_plan_id is not None and plan.caller_action_id is not None:
            self._wake_parent(plan.caller_execution_plan_id, plan.caller_action_id)
        if plan.state is PlanState.STOPPED and _has_sub_plans(plan):
            # children it never started will not start now; a halted parent takes the
            # running (and suspended) ones with it
            states = [PlanState.PLANNED]
            if _halted(plan):
                states.append(PlanState.RUNNING)
            children = {"caller_execution_plan_id": plan.id, "state": states}
            for child in self.persistence.find_execution_plans(filters=children):
                self.world.halt(child.id)
        try:
            entry = registry.lookup(plan.entry_action.action_class)
        except DynflowError:
            return
        names = hooks_of(entry, kinds_for(plan.state, plan.result))
        if names:
            self._soon(partial(self._run_hooks, entry, plan, names))

    def cancel_children(self, plan_id: str, cancelling: list[Future[Any]]) -> None:
        """``world.cancel(plan_id)`` cancels its running and suspended children too (the
        ones not started are stopped when the parent stops, as above).

        ``cancelling``: the parent's own cancel requests. Its steps take events in
        order, so once they have the cancel, no earlier event can start a child.
        """
        running = {"caller_execution_plan_id": plan_id, "state": PlanState.RUNNING}
        if not self.persistence.find_execution_plan_counts(running):
            return
        wait(cancelling, timeout=CANCEL_WAIT)
        for child in self.persistence.find_execution_plans(filters=running):
            try:
                self.world.cancel(child.id)
            except DynflowError as exc:  # it stopped meanwhile, or nobody runs it
                log.info("sub-plan %s of cancelled plan %s: %s", child.id, plan_id, exc)

    def stop(self) -> None:
        """Wait for the hooks already started; part of ``world.terminate()``."""
        with self._pool_lock:
            pool, self._pool, self._stopped = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True)

    def _wake_parent(self, plan_id: str, action_id: int) -> None:
        key = (plan_id, action_id)
        if key not in self._caller_steps:
            self._caller_steps[key] = self.persistence.run_step_id(*key)
        step_id = self._caller_steps[key]
        if step_id is not None:
            self.world.event(plan_id, step_id, SUB_PLAN_FINISHED, optional=True)

    def _run_hooks(self, entry: type[Action], plan: ExecutionPlan, names: tuple[str, ...]) -> None:
        record = plan.entry_action
        context = PhaseContext(self.world, plan.id, Phase.FINALIZE)
        action = entry(context, record.id, input=freeze(record.input), output=dict(record.output))
        for name in names:
            try:
                getattr(action, name)(plan)
            except Exception:
                log.exception("hook %s of execution plan %s failed", name, plan.id)

    def _soon(self, job: Callable[[], None]) -> None:
        if self._inline:
            job()
            return
        with self._pool_lock:
            if self._stopped:
                log.warning("world terminated: hooks of a plan that stopped meanwhile not run")
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(2, thread_name_prefix="dynflow-hooks")
            self._pool.submit(job)


def _halted(plan: ExecutionPlan) -> bool:
    history = plan.execution_history
    return bool(history) and history[-1].name in ("halt execution", DEADLINE_EXCEEDED)


def _has_sub_plans(plan: ExecutionPlan) -> bool:
    for action in plan.actions:
        try:
            if issubclass(registry.lookup(action.action_class), WithSubPlans):
                return True
        except DynflowError:
            continue
    return False
