"""``ActionWorld``: what an action may ask of the engine it runs in.

Actions see the world as ``self.world``. The engine hands them the process's
:class:`dynflow.World`, but the action package knows it only through this
protocol, so that ``dynflow.action`` never imports the world.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dynflow.clock import Clock
    from dynflow.execution_plan.model import ExecutionPlan
    from dynflow.execution_plan.states import PlanResult, PlanState
    from dynflow.persistence.sub_plans import SubPlanRound


class PlanQueries(Protocol):
    """The reads a ``WithSubPlans`` action makes about its children."""

    def find_execution_plans(
        self,
        filters: Mapping[str, Any] | None = None,
        order_by: str = "started_at",
        desc: bool = True,
        page: int | None = None,
        per_page: int | None = None,
    ) -> Sequence[ExecutionPlan]: ...

    def count_sub_plans(
        self, execution_plan_id: str, action_id: int
    ) -> dict[tuple[PlanState, PlanResult], int]: ...

    def sub_plan_round(
        self, execution_plan_id: str, action_id: int, limit: int | None
    ) -> SubPlanRound: ...

    def find_execution_plan_counts(self, filters: Mapping[str, Any] | None = None) -> int: ...


class BuiltPlan(Protocol):
    """A child plan planned by ``build_sub_plan`` and not saved yet."""

    @property
    def plan(self) -> ExecutionPlan: ...


class ActionWorld(Protocol):
    """The engine as an action sees it: the clock, plan operations and two hooks."""

    @property
    def id(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def persistence(self) -> PlanQueries: ...

    def execute(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...

    def resume(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...

    def event(
        self, execution_plan_id: str, step_id: int, payload: Any = None, *, optional: bool = False
    ) -> Future[Any]: ...

    def halt(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...

    def revert(self, execution_plan_id: str) -> Future[ExecutionPlan]: ...

    def cancel(self, execution_plan_id: str) -> list[Future[Any]]: ...

    def plan_sub_plan(
        self,
        action_class: type[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int],
    ) -> ExecutionPlan:
        """Plan (without starting) a child plan of the action ``caller`` =
        (plan id, action id); its parent starts it."""
        ...

    def build_sub_plan(
        self,
        action_class: type[Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: tuple[str, int],
    ) -> BuiltPlan:
        """Plan a child plan of the action ``caller`` without saving it yet."""
        ...

    def save_sub_plans(self, built: Sequence[BuiltPlan]) -> None:
        """Save child plans made by ``build_sub_plan``, many in one write."""
        ...

    def start_sub_plan(self, execution_plan_id: str) -> Future[ExecutionPlan]:
        """Start a planned child plan on any live executor serving its queues."""
        ...

    def start_sub_plans(self, execution_plan_ids: Sequence[str]) -> list[Future[ExecutionPlan]]:
        """Start planned child plans together (locks and reads batched)."""
        ...

    def schedule_step_timeout(
        self, execution_plan_id: str, step_id: int, sequence: int, seconds: float
    ) -> None:
        """Fail the step after ``seconds`` if it is still suspended since hand-out
        ``sequence`` (``Action.schedule_timeout``)."""
        ...
