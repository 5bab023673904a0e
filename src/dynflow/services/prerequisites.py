"""``after``: a plan that starts once other plans stopped.

Such a plan is a delayed plan (``scheduled``, with a delayed row due at once) whose
edges (plan, after plan) are stored with it. The delayed plans' look at due plans
leaves out those with a prerequisite not stopped yet; the world where a prerequisite
stops looks at once (:meth:`DelayedPlans.wake`), and every executor world looks every
``delayed_interval`` seconds anyway (one query), so a wake-up lost to a crash is late,
never lost. When it is taken up, a plan whose prerequisites did not all end
``success`` or ``warning`` (or one of which no longer exists) ends ``stopped``/
``error`` without running, its error naming the plan it waited for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dynflow.action.registry import class_name
from dynflow.errors import ConfigurationError, ExecutionError, NotFound
from dynflow.execution_plan.model import StepError
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence.delayed import DelayedPlanStore
from dynflow.persistence.port import PersistencePort

#: prerequisite results that let the waiting plan run
GOOD = (str(PlanResult.SUCCESS), str(PlanResult.WARNING))


def normalized(after: Iterable[str]) -> tuple[str, ...]:
    """The plan ids of ``after``, each once, in order; a single string is refused
    (it would be taken as its characters)."""
    if isinstance(after, str | bytes):
        raise ConfigurationError(f"after must be a list of plan ids, got the string {after!r}")
    ids: list[str] = []
    for plan_id in after:
        if not isinstance(plan_id, str) or not plan_id:
            raise ConfigurationError(f"after must hold plan ids (strings), got {plan_id!r}")
        if plan_id not in ids:
            ids.append(plan_id)
    return tuple(ids)


def check_exist(persistence: PersistencePort, after: Sequence[str]) -> None:
    """Every plan of ``after`` exists (one query), or :class:`NotFound` naming one."""
    if not after:
        return
    found = {p.id for p in persistence.find_execution_plans(filters={"id": list(after)})}
    for plan_id in after:
        if plan_id not in found:
            raise NotFound(
                f"after: execution plan {plan_id} does not exist: a plan can only wait "
                "for plans that exist"
            )


def check_no_cycle(store: DelayedPlanStore, existing_id: str, after: Sequence[str]) -> None:
    """The key of a new plan names the existing plan ``existing_id``: asking it to wait
    for ``after`` is refused when it is one of them, or one of them waits for it
    (directly or not): the plans would wait for each other forever."""
    if existing_id in after:
        raise ConfigurationError(
            f"after: the key names execution plan {existing_id}, which cannot wait for itself"
        )
    if existing_id in store.ancestors(after):
        raise ConfigurationError(
            f"after: the key names execution plan {existing_id}, and the plans of after "
            "wait for it: waiting for them would form a cycle"
        )


def failure(
    plan_id: str, prerequisites: Sequence[tuple[str, PlanState | None, str | None]]
) -> StepError | None:
    """Why the plan cannot run after its prerequisites (all stopped or gone), or None."""
    for after_id, state, result in prerequisites:
        if state is None:
            message = (
                f"execution plan {plan_id} waited for execution plan {after_id}, which "
                "does not exist any more (deleted?)"
            )
            return StepError(class_name(NotFound), message)
        if state is PlanState.STOPPED and result not in GOOD:
            message = (
                f"execution plan {plan_id} waited for execution plan {after_id}, which "
                f"ended {state}/{result}: it runs only after plans that end success or warning"
            )
            return StepError(class_name(ExecutionError), message)
    return None
