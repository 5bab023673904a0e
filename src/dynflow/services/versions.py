"""Code versions: which executor worlds may run which plans.

Each plan carries the code version of the world that planned it
(``World(code_version=...)``). An executor world of a version runs and recovers
only the plans of its version and those of none; an executor of no version runs
any plan. A plan whose version no live executor runs waits (planned, paused, or
as its request in the client dispatcher) until one registers.
:meth:`CodeVersions.set_code_version` moves a ``planned`` or ``paused`` plan to
another version, e.g. to let the new code finish what the old code paused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dynflow.cluster.client_dispatcher import may_run
from dynflow.coordinator import EXECUTION_LOCK, WorldRecord
from dynflow.errors import ConfigurationError, ExecutionError, LockTaken
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanState

if TYPE_CHECKING:
    from dynflow.services.ports import Ports

#: the states from which a plan may move to another code version
MOVABLE = (PlanState.PLANNED, PlanState.PAUSED)


def not_here(plan: ExecutionPlan, world_id: str, version: str | None) -> ExecutionError:
    """The error for a plan sent to an executor of another code version."""
    return ExecutionError(
        f"execution plan {plan.id} is of code version {plan.code_version}: world {world_id} "
        f"(code version {version}) does not run it"
    )


def waiting_for(plan: ExecutionPlan, worlds: Iterable[WorldRecord]) -> str | None:
    """The code version the plan waits for an executor of (None: it does not wait:
    it has no version, it stopped, or a live executor runs its version)."""
    version = plan.code_version
    if version is None or plan.state in (PlanState.STOPPED, PlanState.SCHEDULED):
        return None
    executors = [w for w in worlds if w.executor]
    if any(may_run(w.meta.get("code_version"), version) for w in executors):
        return None
    return version


class CodeVersions:
    """Moves plans between code versions (``world.set_code_version``)."""

    def __init__(self, ports: Ports) -> None:
        self.world_id = ports.world_id
        self.persistence = ports.persistence
        self.coordinator = ports.coordinator

    def set_code_version(self, plan_id: str, version: str | None) -> ExecutionPlan:
        """Move a ``planned`` or ``paused`` plan to code ``version`` (None: any executor
        runs it), under its execution lock, with a history entry ``code version X ->
        Y``; an executor of that version then runs it (a paused plan when resumed, a
        planned one when executed or recovered). Others: :class:`ExecutionError`."""
        if version is not None and not (isinstance(version, str) and 0 < len(version) <= 64):
            raise ConfigurationError(
                f"a code version is a string of 1 to 64 characters or None, got {version!r}"
            )
        self._check(self.persistence.load_execution_plan(plan_id))
        try:
            self.coordinator.acquire(EXECUTION_LOCK, plan_id)
        except LockTaken as exc:
            raise ExecutionError(
                f"execution plan {plan_id} is being executed by world {exc.owner_id}: only "
                "a paused or planned plan can move to another code version"
            ) from None
        try:
            self._check(self.persistence.load_execution_plan(plan_id))
            self.persistence.set_code_version(plan_id, version, self.world_id)
        finally:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
        return self.persistence.load_execution_plan(plan_id)

    @staticmethod
    def _check(plan: ExecutionPlan) -> None:
        if plan.state not in MOVABLE:
            raise ExecutionError(
                f"execution plan {plan.id} is {plan.state}/{plan.result}: only a paused or "
                "planned plan can move to another code version"
            )
