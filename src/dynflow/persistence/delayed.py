"""Delayed plans: what to plan (action class and arguments) and when, and their store.

A delayed plan is an execution plan in state ``scheduled`` (with its entry
action and that action's ``pending`` plan step) plus a delayed record. Both are
written at once, and the delayed record goes away with the write that moves the
plan on (planned, or stopped), so it exists exactly while the plan waits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes
from dynflow.execution_plan.states import PlanResult, PlanState, StepState

#: the entry action and its plan step, written when the plan is scheduled
ENTRY_ID = 1
#: plan states in which a delayed plan may be taken up (``planning``: by a world that
#: died while planning it; its lock is gone once the world is invalidated)
CLAIMABLE = (str(PlanState.SCHEDULED), str(PlanState.PLANNING))


@dataclass(frozen=True)
class DelayedPlan:
    """A plan waiting for its time: when, until when, and what to plan then."""

    execution_plan_id: str
    label: str
    start_at: datetime
    start_before: datetime | None
    action_class: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: the trigger options stored with the plan, given to it again when it is planned
    attributes: PlanAttributes = field(default_factory=PlanAttributes)


class Claim(StrEnum):
    """What :meth:`DelayedPlanStore.claim` found."""

    #: the lock is ours now (and the plan ``planning`` if asked)
    CLAIMED = "claimed"
    #: another world holds the plan's execution lock
    LOCKED = "locked"
    #: the plan is not waiting any more (planned, stopped) or does not exist
    GONE = "gone"


class DelayedPlanStore(Protocol):
    """The delayed-plan aggregate. Locks are coordinator rows (class, id, owner_id,
    data); ``release`` names one by class, id and owner_id."""

    def save_scheduled(
        self, plan: ExecutionPlan, delayed: Mapping[str, Any], after: Sequence[str] = ()
    ) -> None:
        """Insert a ``scheduled`` plan and its delayed row (execution_plan_id, start_at,
        start_before, args) at once, with the plans it starts ``after``. Raises
        :class:`~dynflow.errors.KeyTaken` (writing nothing) when its key is taken."""
        ...

    def prerequisites(self, plan_id: str) -> list[tuple[str, PlanState | None, str | None]]:
        """The plans ``plan_id`` starts after: (id, state, result), state None when the
        plan does not exist (any more)."""
        ...

    def dependents(self, plan_id: str) -> list[str]:
        """The scheduled plans that wait for ``plan_id``."""
        ...

    def dependents_of(self, plan_ids: Sequence[str]) -> list[str]:
        """The scheduled plans that wait for any of ``plan_ids`` (one query)."""
        ...

    def ancestors(self, plan_ids: Sequence[str]) -> set[str]:
        """``plan_ids`` and every plan they wait for, directly or not."""
        ...

    def claim(self, plan_id: str, lock: Mapping[str, Any], *, planning: bool) -> Claim:
        """Take the plan's execution ``lock`` if the plan still waits (and make it
        ``planning`` with ``planning``)."""
        ...

    def save_processed(
        self,
        plan: ExecutionPlan,
        *,
        locks: Sequence[Mapping[str, Any]] = (),
        release: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the plan as planning left it over its scheduled one and forget its
        delayed row; take ``locks``, delete ``release``. Raises
        :class:`~dynflow.errors.LockTaken` (writing nothing) when a lock is held."""
        ...

    def stop(
        self,
        plan_id: str,
        *,
        result: PlanResult,
        step_state: StepState,
        error: Mapping[str, Any] | None,
        ended_at: datetime,
        release: Mapping[str, Any] | None = None,
    ) -> None:
        """Stop a plan that was never planned."""
        ...

    def delete(self, plan_id: str) -> None: ...

    def load(self, plan_id: str) -> DelayedPlan:
        """Raises :class:`~dynflow.errors.NotFound` once the plan was processed."""
        ...

    def find_due(
        self, now: datetime, limit: int, runnable_by: str | None = None
    ) -> list[DelayedPlan]:
        """Up to ``limit`` plans due by ``now`` whose prerequisites all stopped (or are
        gone), the highest priority first, then the oldest; ``runnable_by``: only those
        of that code version or of none."""
        ...

    def find(self, page: int | None = None, per_page: int | None = None) -> list[DelayedPlan]: ...

    def count(self) -> int: ...
