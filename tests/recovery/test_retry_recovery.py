"""A retry's backoff outlives a world that died during it: the world that recovers the
plan keeps the step waiting and runs the attempt at the stored due time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from dynflow import Action, PlanResult, PlanState, Retry, StepError, StepState, World
from dynflow.clock import ManualClock
from dynflow.persistence.tables import steps
from tests.integration.test_lifecycle import _crashed_plan, _edit
from tests.support import eventually

MakeWorld = Callable[..., World]
RUNS: Counter[str] = Counter()


class RetriedAfterCrash(Action):
    retry = Retry(attempts=3, backoff=30.0, jitter=0.0, on=(ConnectionError,))

    def run(self, event: object = None) -> None:
        RUNS[self.execution_plan_id] += 1


def test_a_waiting_step_of_a_dead_world_runs_at_its_due_time(
    db_url: str, make_world: MakeWorld
) -> None:
    plan_id, step_id, dead = _crashed_plan(db_url, make_world, RetriedAfterCrash, "stale heartbeat")
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    _edit(  # the dead world had left the step waiting for its second attempt
        db_url,
        sa.update(steps)
        .where(steps.c.execution_plan_id == plan_id, steps.c.id == step_id)
        .values(
            state="waiting",
            attempts=1,
            next_attempt_at=due,
            error=StepError("ConnectionError", "refused").to_json(),
            errors=[StepError("ConnectionError", "refused").to_json()],
        ),
    )
    clock = ManualClock(utc_start=due - timedelta(seconds=1))
    rescuer = make_world(db_url, auto_execute=False, validity_check_interval=0, clock=clock)
    assert rescuer.invalidate(dead) == 1
    plan = eventually(
        lambda: (
            (p := rescuer.persistence.load_execution_plan(plan_id)).state is PlanState.RUNNING
            and any(e.world_id == rescuer.id for e in p.execution_history)
            and p
        )
    )
    assert plan.steps[step_id].state is StepState.WAITING  # not failed, not run at once
    clock.advance(0.9)
    assert RUNS[plan_id] == 0
    clock.advance(0.1)
    done = eventually(
        lambda: (
            (p := rescuer.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        )
    )
    assert (done.result, done.steps[step_id].attempts, RUNS[plan_id]) == (PlanResult.SUCCESS, 2, 1)
    assert [e.message for e in done.steps[step_id].errors] == ["refused"]
