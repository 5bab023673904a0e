"""Waiting for a plan this world did not start: the ``.finished`` future of a trigger
that found its key taken, or of a plan that starts ``after`` others.

The plan may run in any world. A plan that stops or pauses here resolves its
futures at once (``FinishedPlans`` tells :meth:`PlanWaiter.finished`); for the others,
one query every ``delayed_interval`` seconds, while anything is awaited, looks for
the awaited plans that stopped or paused.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from dynflow import futures
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState

if TYPE_CHECKING:
    from dynflow.clock import Timer
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: states in which a plan's ``.finished`` resolves
SETTLED = (PlanState.STOPPED, PlanState.PAUSED)


class PlanWaiter:
    """Futures of plans by id, resolved when the plan stops or pauses, in any world."""

    def __init__(self, ports: Ports) -> None:
        self.persistence = ports.persistence
        self.clock = ports.clock
        self.interval = ports.config.delayed_interval
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Future[ExecutionPlan]]] = {}
        self._timer: Timer | None = None
        self._stopped = False

    def wait(self, plan_id: str) -> Future[ExecutionPlan]:
        """A future of the plan once it stopped or paused (at once if it has)."""
        future: Future[ExecutionPlan] = Future()
        with self._lock:
            if self._stopped:
                return futures.failed(DynflowError("the world is terminated"))
            self._waiting.setdefault(plan_id, []).append(future)
            if self._timer is None:
                self._timer = self.clock.schedule(self.interval, self._tick)
        self._look([plan_id])
        return future

    def finished(self, plan: ExecutionPlan) -> None:
        """A plan stopped or paused in this world."""
        if plan.state in SETTLED and plan.id in self._waiting:
            self._resolve(plan)

    def stop(self) -> None:
        """Fail what is still awaited; part of ``world.terminate()``."""
        with self._lock:
            self._stopped = True
            waiting, self._waiting = self._waiting, {}
            if self._timer is not None:
                self._timer.cancel()
        for pending in waiting.values():
            for future in pending:
                if not future.done():
                    future.set_exception(DynflowError("the world terminated while waiting"))

    def _tick(self) -> None:
        with self._lock:
            self._timer = None
            ids = list(self._waiting)
        try:
            self._look(ids)
        except Exception:
            log.exception("looking for awaited plans failed")
        with self._lock:
            if self._waiting and not self._stopped and self._timer is None:
                self._timer = self.clock.schedule(self.interval, self._tick)

    def _look(self, plan_ids: list[str]) -> None:
        if not plan_ids:
            return
        settled = self.persistence.find_execution_plans(
            filters={"id": plan_ids, "state": [str(s) for s in SETTLED]}
        )
        for plan in settled:
            self._resolve(self.persistence.load_execution_plan(plan.id))

    def _resolve(self, plan: ExecutionPlan) -> None:
        with self._lock:
            pending = self._waiting.pop(plan.id, [])
        for future in pending:
            if not future.done():
                future.set_result(plan)
