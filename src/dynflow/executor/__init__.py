"""The executor: a core that owns running plans, and worker pools that run phases."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dynflow.execution_plan.model import ExecutionPlan
    from dynflow.executor.messages import Reply


class Executor(Protocol):
    """What a world needs from its executor (threaded, or inline for tests)."""

    def execute(self, plan: ExecutionPlan, reply: Reply | None = None) -> Future[ExecutionPlan]: ...

    def recover(
        self,
        plan: ExecutionPlan,
        dead_world: str | None,
        recovering: bool,
        reply: Reply | None = None,
    ) -> Future[ExecutionPlan]: ...

    def halt(self, execution_plan_id: str, why: str | None = None) -> Future[ExecutionPlan]: ...

    def running(self, execution_plan_id: str) -> bool: ...

    def paused_by_termination(self) -> list[str]: ...

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any, optional: bool
    ) -> Future[Any]: ...

    def cancel(self, execution_plan_id: str) -> Future[list[Future[Any]]]: ...

    def timeout(
        self, execution_plan_id: str, step_id: int, sequence: int, seconds: float
    ) -> None: ...

    def disown(self, register: Callable[[], None]) -> Future[None]:
        """This world was declared dead: drop every plan without writing, release the
        locks still held, then ``register`` before anything else happens (see
        :class:`~dynflow.executor.messages.Disown`)."""
        ...

    def limits_freed(self) -> None:
        """Another world released limits this world's steps may wait for."""
        ...

    def terminate(self, timeout: float | None) -> None: ...

    def alive(self) -> bool:
        """False once a part of it died (see :meth:`ThreadedExecutor.alive`)."""
        ...

    def pool_use(self) -> dict[str, int]:
        """Workers running a step now, per queue (empty without worker pools)."""
        ...
