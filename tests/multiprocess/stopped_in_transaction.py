"""A world that stops (SIGSTOP) inside a transaction holding row locks on its own
registry record and execution locks: ``python -m tests.multiprocess.stopped_in_transaction
URL LEASE``. Prints its world id and the id of the plan it holds (a suspended step),
then ``stopping`` and stops itself between the write and its commit."""

from __future__ import annotations

import os
import signal
import sys
import time

import sqlalchemy as sa

from dynflow import World
from dynflow.execution_plan.states import StepState
from dynflow.persistence.tables import coordinator_records as records
from tests.multiprocess.remote_actions import WaitForEvent


def _suspended(world: World, plan_id: str) -> bool:
    plan = world.persistence.load_execution_plan(plan_id)
    return any(step.state is StepState.SUSPENDED for step in plan.steps.values())


def main(url: str, lease: float) -> None:
    world = World(
        url,
        lease=lease,
        heartbeat_interval=lease / 4,
        validity_check_interval=0,  # it judges no other world
        maintenance_interval=0,
    )
    triggered = world.trigger(WaitForEvent)
    deadline = time.monotonic() + 30
    while not _suspended(world, triggered.execution_plan_id):
        if time.monotonic() > deadline:
            raise SystemExit("the plan's step never suspended")
        time.sleep(0.05)
    print(world.id, triggered.execution_plan_id, flush=True)
    with world.persistence.db.write() as connection:
        # row locks on its record and on each lock it holds, until the commit
        connection.execute(
            sa.update(records)
            .where(
                sa.or_(
                    records.c.owner_id == world.id,
                    sa.and_(records.c["class"] == "world", records.c.id == world.id),
                )
            )
            .values(data=records.c.data)
        )
        print("stopping", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
    world.terminate()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
