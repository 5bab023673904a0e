"""Suspending a running step until an event arrives."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld


class SuspendedAction:
    """Given to the ``suspend`` callback: where to send the events that wake the step."""

    def __init__(self, world: ActionWorld, execution_plan_id: str, step_id: int) -> None:
        self.world = world
        self.execution_plan_id = execution_plan_id
        self.step_id = step_id

    def event(self, payload: Any = None, *, optional: bool = False) -> Future[Any]:
        """Deliver ``payload`` to the suspended step (``run(event=payload)``)."""
        return self.world.event(self.execution_plan_id, self.step_id, payload, optional=optional)

    def __repr__(self) -> str:
        return f"<SuspendedAction plan={self.execution_plan_id} step={self.step_id}>"


class Suspend(BaseException):
    """Raised by ``Action.suspend`` to end the run call. A BaseException, so that an
    ``except Exception`` in user code does not swallow it."""

    def __init__(self, callback: Callable[[SuspendedAction], Any] | None) -> None:
        super().__init__("suspended")
        self.callback = callback
