"""The executor's front: API calls become messages to its core; subclasses deliver them."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor.core import ExecutorCore
from dynflow.executor.messages import (
    CancelSteps,
    DeliverEvent,
    Disown,
    HaltPlan,
    Message,
    Reply,
    RetryLimits,
    Start,
    StepTimeout,
)
from dynflow.observe import Observability


class ExecutorFront:
    """Requests to an executor, as messages to its core; subclasses deliver them."""

    core: ExecutorCore
    #: told of each plan handed to this executor (set by the world)
    observe: Observability = Observability()

    def post(self, message: Message) -> None:
        raise NotImplementedError

    def execute(self, plan: ExecutionPlan, reply: Reply | None = None) -> Future[ExecutionPlan]:
        """Run ``plan``, handed over: the executor changes it in place from now on
        (give it a plan nobody else reads, e.g. one just loaded or planned). ``reply``:
        the answer written with the commit that stops or pauses it."""
        future: Future[ExecutionPlan] = Future()
        self.observe.plan_starting(plan, future)
        self.post(Start(plan, future, reply=reply))
        return future

    def recover(
        self,
        plan: ExecutionPlan,
        dead_world: str | None,
        recovering: bool,
        reply: Reply | None = None,
    ) -> Future[ExecutionPlan]:
        """Like :meth:`execute`, for a plan a dead world left (``plan`` is handed over)."""
        future: Future[ExecutionPlan] = Future()
        self.observe.plan_starting(plan, future)
        self.post(Start(plan, future, dead_world, recovering, reply))
        return future

    def halt(self, execution_plan_id: str, why: str | None = None) -> Future[ExecutionPlan]:
        future: Future[ExecutionPlan] = Future()
        self.post(HaltPlan(execution_plan_id, future, why))
        return future

    def pool_use(self) -> dict[str, int]:
        """Workers running a step now, per queue: none without worker pools."""
        return {}

    def limits_freed(self) -> None:
        self.post(RetryLimits())

    def running(self, execution_plan_id: str) -> bool:
        return execution_plan_id in self.core.plans

    def paused_by_termination(self) -> list[str]:
        return list(self.core.paused_by_termination)

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any, optional: bool
    ) -> Future[Any]:
        future: Future[Any] = Future()
        self.post(DeliverEvent(execution_plan_id, step_id, payload, future, optional))
        return future

    def cancel(self, execution_plan_id: str) -> Future[list[Future[Any]]]:
        reply: Future[list[Future[Any]]] = Future()
        self.post(CancelSteps(execution_plan_id, reply))
        return reply

    def timeout(self, execution_plan_id: str, step_id: int, sequence: int, seconds: float) -> None:
        self.post(StepTimeout(execution_plan_id, step_id, sequence, seconds))

    def disown(self, register: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        self.post(Disown(register, future))
        return future
