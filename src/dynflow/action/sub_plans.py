"""Sub-plans: an action that triggers other plans and waits for all of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, NoReturn

from dynflow.action.cancellable import Cancellable
from dynflow.action.events import EVENT_KEY, is_engine_event
from dynflow.errors import DynflowError
from dynflow.execution_plan.states import PlanResult, PlanState, StepState

if TYPE_CHECKING:
    from dynflow.action.world import ActionWorld
    from dynflow.persistence.sub_plans import SubPlanRound

#: sent to the parent step whenever one of its sub-plans stops or pauses
SUB_PLAN_FINISHED: dict[str, Any] = {EVENT_KEY: "sub_plan_finished"}


_LATEST = datetime.max.replace(tzinfo=UTC)


def _reverting(plan: Any) -> bool:
    """A child whose revert failed: paused, with steps reverting or reverted."""
    return any(
        step.state in (StepState.REVERTING, StepState.REVERTED) for step in plan.steps.values()
    )


class SubPlan(NamedTuple):
    """A sub-plan triggered by ``WithSubPlans.trigger``."""

    execution_plan_id: str


class SubPlansFailed(DynflowError):
    """Some sub-plans of a ``WithSubPlans`` action failed."""


class WithSubPlans(Cancellable):
    """Mixin: ``create_sub_plans()`` triggers child plans; the step waits for them all.

    ``create_sub_plans()`` returns (or yields) the sub-plans made with
    ``self.trigger(ActionClass, *args, **kwargs)``. They are planned at once (saved
    ``batch_size`` at a time, one write per batch) and started up to
    ``concurrency_limit`` at a time (class attribute, or the ``concurrency_limit``
    input), those startable at each wake-up together; the step suspends until every
    child has stopped or paused. Its output gets ``total_count``, ``success_count``,
    ``warning_count`` (children that ended ``warning``: the parent plan then ends
    ``warning`` too), ``failed_count`` and ``pending_count``; it fails if any child
    failed, and a resume re-runs only the failed (paused) children.

    ``world.cancel(parent)`` cancels the step (it ends ``cancelled``) and the running
    and suspended children (``world.cancel(child)``); ``world.halt(parent)`` halts
    the running and suspended children. Children not started are stopped either way.

    Reverting the parent (``world.revert``) reverts its children that ended ``success``
    or ``warning``, one at a time, the latest to end first, each with ``world.revert``
    (on any executor). The parent's revert starts a child's revert and suspends (it
    holds no worker), woken when the child stops or pauses; it fails if a child's
    revert fails (that child is left ``paused``: a resume of the parent retries it;
    children already reverted are not reverted again).

    For very many children define ``total_count()`` and ``batch(start, size)``
    (returning the sub-plans ``start`` to ``start + size``) instead: children are
    then planned ``batch_size`` at a time, as the running ones finish.
    """

    concurrency_limit: ClassVar[int | None] = None
    batch_size: ClassVar[int] = 100
    resume_event: ClassVar[Any] = SUB_PLAN_FINISHED

    # provided by dynflow.Action
    world: ActionWorld
    input: Any
    output: Any
    execution_plan_id: str
    id: int
    suspend: Any

    @classmethod
    def ended_with_warning(cls, output: Mapping[str, Any]) -> bool:
        """The step succeeded, but some children ended ``warning``: so does the plan."""
        return bool(output.get("warning_count"))

    def create_sub_plans(self) -> Iterable[SubPlan]:
        """Return (or yield) the children, each made with ``self.trigger(...)``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement create_sub_plans() (or total_count() "
            "and batch(start, size))"
        )

    def trigger(self, action_class: type[Any], *args: Any, **kwargs: Any) -> SubPlan:
        """Plan a child plan of this action; it starts when the concurrency limit allows.

        Called from ``create_sub_plans()`` or ``batch()``, the children are saved
        ``batch_size`` at a time, each batch in one write (a planning failure still
        raises here, at once)."""
        caller = (self.execution_plan_id, self.id)
        unsaved: list[Any] | None = getattr(self, "_unsaved", None)
        if unsaved is None:
            plan = self.world.plan_sub_plan(action_class, args, kwargs, caller=caller)
            return SubPlan(plan.id)
        built = self.world.build_sub_plan(action_class, args, kwargs, caller)
        unsaved.append(built)
        if len(unsaved) >= self.batch_size:
            self._save_unsaved()
        return SubPlan(built.plan.id)

    def _save_unsaved(self) -> None:
        unsaved: list[Any] = getattr(self, "_unsaved", None) or []
        if unsaved:
            self._unsaved: list[Any] | None = []
            self.world.save_sub_plans(unsaved)

    @classmethod
    def check_planned_input(cls, input: Mapping[str, Any]) -> None:
        limit = input.get("concurrency_limit", cls.concurrency_limit)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0
        ):
            raise DynflowError(
                f"{cls.__name__}: concurrency_limit must be a positive integer or None, "
                f"got {limit!r}"
            )

    # -- the run phase ----------------------------------------------------------------

    def run(self, event: Any = None) -> None:
        resumed = 0
        if event is None and "total_count" not in self.output:
            self._plan_children()
        elif event is None:  # the plan was resumed after children failed
            resumed = self._resume_failed()
        elif not is_engine_event(event, SUB_PLAN_FINISHED):
            raise DynflowError(f"{type(self).__name__} got an unexpected event {event!r}")
        self._plan_next_batch()
        counts = self._start_children()
        # resumed children still look paused until their executor picks them up (those
        # already picked up, or even stopped again, are counted as what they are now)
        resumed = min(resumed, counts["failed_count"])
        counts["failed_count"] -= resumed
        counts["pending_count"] += resumed
        self.output.update(counts)
        if counts["pending_count"]:
            self.suspend()
        if counts["failed_count"]:
            raise SubPlansFailed(
                f"{counts['failed_count']} of {counts['total_count']} sub-plans failed; "
                "resume the plan to re-run the failed ones"
            )

    # -- the revert phase -------------------------------------------------------------

    def revert(self, event: Any = None) -> None:
        """Revert the children one at a time; suspended while one's revert is under way.

        Called afresh (``event`` None: the revert begins, is resumed or recovered) it
        retries a child whose revert failed; woken by a child's end, such a failure
        fails this revert."""
        if event is not None and not is_engine_event(event, SUB_PLAN_FINISHED):
            raise DynflowError(f"{type(self).__name__} got an unexpected event {event!r}")
        paused = [c for c in self._children(PlanState.PAUSED) if _reverting(c)]
        if self._children(PlanState.RUNNING) or any(
            c.result is PlanResult.PENDING
            for c in paused  # marked, not started yet
        ):
            self.suspend()  # a child's revert is under way: its end wakes this step
        failed = [c for c in paused if c.result is not PlanResult.PENDING]
        if event is not None and failed:
            self._revert_failed(failed[0])
        children = [
            child
            for child in self._children(PlanState.STOPPED)
            if child.result in (PlanResult.SUCCESS, PlanResult.WARNING)
        ]
        children += failed
        # a child whose revert failed (ended_at cleared) was the latest: it goes first
        children.sort(key=lambda c: c.ended_at or _LATEST, reverse=True)
        for child in children:
            started = self.world.revert(child.id)
            if not started.done():
                self.suspend()  # woken when the child stops or pauses
            reverted = started.result()  # nothing to revert, or it ended already
            if reverted.result is not PlanResult.REVERTED:
                self._revert_failed(reverted)

    def _revert_failed(self, child: Any) -> NoReturn:
        raise SubPlansFailed(
            f"the revert of sub-plan {child.id} failed ({child.state}/{child.result}): "
            "resume this plan to retry it"
        )

    def _limit(self) -> int | None:
        limit: int | None = self.input.get("concurrency_limit", self.concurrency_limit)
        return limit

    def _batched(self) -> bool:
        return hasattr(self, "batch") and hasattr(self, "total_count")

    def _plan_children(self) -> None:
        if self._batched():
            self.output["total_count"] = int(self.total_count())  # type: ignore[attr-defined]
            self.output["planned_count"] = 0
            return
        count = 0
        self._unsaved = []
        try:
            made = self.create_sub_plans()
            if isinstance(made, SubPlan) or not isinstance(made, Iterable):
                raise DynflowError(
                    f"{type(self).__name__}.create_sub_plans() must return sub-plans made "
                    f"with self.trigger(...) (a list or an iterator), got {made!r}"
                )
            for sub_plan in made:
                if not isinstance(sub_plan, SubPlan):
                    raise DynflowError(
                        f"{type(self).__name__}.create_sub_plans() must return sub-plans "
                        f"made with self.trigger(...), got {sub_plan!r}"
                    )
                count += 1
        finally:
            self._save_unsaved()
            self._unsaved = None
        self.output["total_count"] = count
        self.output["planned_count"] = count

    def _plan_next_batch(self) -> None:
        """Batched children: plan more when fewer than the limit wait to start."""
        total, planned = self.output["total_count"], self.output.get("planned_count", 0)
        if not self._batched() or planned >= total:
            return
        waiting = {
            "caller_execution_plan_id": self.execution_plan_id,
            "caller_action_id": self.id,
            "state": PlanState.PLANNED,
        }
        if self.world.persistence.find_execution_plan_counts(waiting) >= (
            self._limit() or self.batch_size
        ):
            return
        size = min(self.batch_size, total - planned)
        self._unsaved = []
        try:
            made = list(self.batch(planned, size))  # type: ignore[attr-defined]
        finally:
            self._save_unsaved()
            self._unsaved = None
        self.output["planned_count"] = planned + len(made)

    def _children(self, state: PlanState) -> Sequence[Any]:
        filters = {
            "caller_execution_plan_id": self.execution_plan_id,
            "caller_action_id": self.id,
            "state": state,
        }
        plans: Sequence[Any] = self.world.persistence.find_execution_plans(
            filters=filters, order_by="id", desc=False
        )
        return plans

    def _counts(self, counts: Mapping[tuple[PlanState, PlanResult], int]) -> dict[str, int]:
        success = counts.get((PlanState.STOPPED, PlanResult.SUCCESS), 0)
        warning = counts.get((PlanState.STOPPED, PlanResult.WARNING), 0)
        failed = sum(
            n
            for (state, result), n in counts.items()
            if state is PlanState.PAUSED
            or (state is PlanState.STOPPED and result in (PlanResult.ERROR, PlanResult.CANCELLED))
        )
        total = int(self.output["total_count"])
        return {
            "total_count": total,
            "success_count": success,
            "warning_count": warning,
            "failed_count": failed,
            "pending_count": total - success - warning - failed,
        }

    def _start_children(self) -> dict[str, int]:
        """Start as many planned children as the limit allows, together. Children
        being started (their execution lock taken, not running yet) count as running.
        Their counts, those being started and those to start are read together."""
        children = self._read_children()
        if children.to_start:
            self.world.start_sub_plans(children.to_start)
        return self._counts(children.counts)

    def _read_children(self) -> SubPlanRound:
        """The children's counts, those being started and those that may start now."""
        return self.world.persistence.sub_plan_round(self.execution_plan_id, self.id, self._limit())

    def _resume_failed(self) -> int:
        paused = self._children(PlanState.PAUSED)
        for child in paused:
            self.world.resume(child.id)
        return len(paused)
