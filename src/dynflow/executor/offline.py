"""Halt, skip or pause a plan that no executor runs (halt and skip: by running a
throwaway executor core on it).

The caller has loaded the plan and holds its execution lock; the core's own commit
writes the result, fenced by that lock, so the rules are the core's: what a halt
does to suspended steps, which locks a stopping plan releases, which steps a skip
takes with it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.executor.commit import LockLost
from dynflow.executor.core import ExecutorCore
from dynflow.executor.messages import Adopt, HaltPlan, Message, SkipStep
from dynflow.executor.runtime import PlanRuntime
from dynflow.persistence import PersistencePort
from dynflow.persistence.changes import Changes


def halt(
    persistence: PersistencePort,
    world_id: str,
    plan: ExecutionPlan,
    on_finished: Callable[[ExecutionPlan], None] | None = None,
    *,
    registration: str,
    why: str | None = None,
) -> ExecutionPlan:
    """Stop the plan (``stopped``/``error``); its suspended steps fail, its singleton
    locks and its execution lock are released in the same commit. ``on_finished`` is
    called with the stopped plan after the commit (parents wake up, hooks run).

    Raises :class:`~dynflow.executor.commit.LockLost` (and writes nothing) when
    ``world_id`` does not hold the plan's execution lock under ``registration`` (its
    :attr:`~dynflow.coordinator.Coordinator.token`).
    """
    core = ExecutorCore(world_id, persistence, lambda: registration, queues=())
    core.on_finished = on_finished
    halted: Future[ExecutionPlan] = Future()
    _run(core, plan, HaltPlan(plan.id, halted, why))
    return halted.result(timeout=0)  # settled by the commit above


def skip(
    persistence: PersistencePort,
    world_id: str,
    plan: ExecutionPlan,
    step_id: int,
    *,
    registration: str,
) -> ExecutionPlan:
    """Mark a failed step of the paused plan skipped, with the pending steps that need
    its output. The plan stays paused and its execution lock stays held (the caller
    releases it). Raises like :func:`halt` when the lock is not held, and
    :class:`~dynflow.errors.NotFound`/:class:`~dynflow.errors.ExecutionError` for a
    step that does not exist or did not fail."""
    core = ExecutorCore(world_id, persistence, lambda: registration, queues=())
    skipped: Future[ExecutionPlan] = Future()
    _run(core, plan, SkipStep(plan.id, step_id, skipped))
    return skipped.result(timeout=0)


def pause(
    persistence: PersistencePort, world_id: str, plan: ExecutionPlan, *, registration: str
) -> ExecutionPlan:
    """Mark a plan that a dead world left running ``paused`` (result pending) while no
    executor runs: it waits for one, which recovers it at start as the dead world left
    it (its steps are untouched: the executor fails or re-runs the interrupted ones, and
    the rescue strategy applies). Raises like :func:`halt` when the lock is not held."""
    changes = Changes()
    runtime = PlanRuntime.from_plan(replace(plan), changes)
    runtime.set_state(PlanState.PAUSED, PlanResult.PENDING)
    runtime.record("pause execution", world_id)
    if persistence.apply_fenced(changes, world_id, registration):
        raise LockLost(f"world {world_id} does not hold the execution lock of plan {plan.id}")
    return runtime.snapshot()


def _run(core: ExecutorCore, plan: ExecutionPlan, request: Message) -> None:
    adopted: Future[None] = Future()
    for message in (Adopt(replace(plan), adopted), request):  # the caller's copy stays as read
        core.handle(message)
    _, callbacks = core.flush()  # a plan that is not executing hands out no work
    for callback in callbacks:
        callback()
    adopted.result(timeout=0)
