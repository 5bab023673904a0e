"""A process stopped (SIGSTOP) inside an open transaction, between a write and its
commit, holds row locks on its world's record and execution locks. Another world
still invalidates it and takes its plan over, within a bound: the database ends the
stopped session once it has been idle in its transaction for half the world's lease
(at least 5 s), and the invalidating world gives up waiting for those rows after
``INVALIDATION_LOCK_WAIT`` and tries again at its next check, instead of hanging."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dynflow import PlanResult, World
from dynflow.errors import DynflowError
from dynflow.persistence.sql.database import idle_in_transaction_for
from dynflow.persistence.tables import coordinator_records as records
from dynflow.services.liveness import INVALIDATION_LOCK_WAIT, detection_bound
from tests.conftest import make_url
from tests.multiprocess.conftest import REPO_ROOT, TIMEOUT
from tests.support import eventually, suspended_step

MakeWorld = Callable[..., World]
#: the stopped world's lease: short, so that the test is too
LEASE = 4.0


@pytest.fixture(params=["postgresql", "mysql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, tmp_path)


@pytest.fixture
def stopped(url: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """The stopped process, its world id and the id of the plan it held."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.multiprocess.stopped_in_transaction", url, str(LEASE)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        world_id, plan_id = child.stdout.readline().split()
        assert child.stdout.readline().strip() == "stopping"
        eventually(lambda: _state(child.pid) == "T", timeout=TIMEOUT)
        yield child, world_id, plan_id
    finally:
        child.kill()  # a stopped process dies of SIGKILL too
        child.wait(TIMEOUT)
        if child.stdout is not None:
            child.stdout.close()


def _state(pid: int) -> str:
    """The process state letter of ``pid`` (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_world_stopped_inside_a_transaction_is_invalidated_within_a_bound(
    url: str, stopped: tuple[subprocess.Popen[str], str, str], make_world: MakeWorld
) -> None:
    child, dead_id, plan_id = stopped
    began = time.monotonic()
    # starting, it already tries (its start-up recovery must not hang on those rows)
    survivor = make_world(url, validity_check_interval=0.3, ping_timeout=0.5)
    assert time.monotonic() - began < INVALIDATION_LOCK_WAIT + TIMEOUT

    config = survivor.config
    bound = (
        detection_bound(config, LEASE)
        + idle_in_transaction_for(LEASE)
        + INVALIDATION_LOCK_WAIT
        + config.validity_check_interval
    )

    def invalidated() -> bool:
        return dead_id not in {w.id for w in survivor.coordinator.find_worlds()}

    eventually(invalidated, timeout=bound)
    assert child.poll() is None  # still there
    assert _state(child.pid) == "T"  # and still stopped

    # its plan was taken over: the survivor runs it now and it takes an event there
    held = eventually(
        lambda: survivor.coordinator.find_locks(lock_class="execution_lock", owner_id=survivor.id),
        timeout=TIMEOUT,
    )
    assert [lock.id for lock in held] == [plan_id]
    step_id = suspended_step(survivor, plan_id, timeout=TIMEOUT)

    def delivered() -> bool:
        try:  # refused while the survivor is still taking the plan over
            return bool(survivor.event(plan_id, step_id, "go").result(TIMEOUT))
        except DynflowError:
            return False

    eventually(delivered, timeout=TIMEOUT, interval=0.2)
    plan = eventually(
        lambda: (p := survivor.persistence.load_execution_plan(plan_id)).state == "stopped" and p,
        timeout=TIMEOUT,
    )
    assert plan.result == PlanResult.SUCCESS
    assert plan.entry_action.output["event_world_id"] == survivor.id


def test_invalidation_gives_up_on_rows_another_session_holds_locked(
    url: str, make_world: MakeWorld
) -> None:
    dead = make_world(url, executor=False, validity_check_interval=0, maintenance_interval=0)
    survivor = make_world(url, executor=False, validity_check_interval=0, maintenance_interval=0)
    holder = sa.create_engine(url)  # a session of its own: no idle-in-transaction timeout
    try:
        with holder.connect() as connection:
            connection.execute(
                sa.update(records)
                .where(records.c["class"] == "world", records.c.id == dead.id)
                .values(data=records.c.data)
            )
            # the record is locked: invalidation gives up (until the next check)
            assert survivor.liveness.invalidate(dead.id) is None
            assert dead.id in {w.id for w in survivor.coordinator.find_worlds()}
            connection.rollback()
        assert survivor.liveness.invalidate(dead.id) == 0  # a client: no plans to take
        assert dead.id not in {w.id for w in survivor.coordinator.find_worlds()}
    finally:
        holder.dispose()


def test_a_worlds_sessions_end_idle_in_a_transaction_after_half_its_lease(
    url: str, make_world: MakeWorld
) -> None:
    world = make_world(url, executor=False, lease=16.0, maintenance_interval=0)
    postgres = url.startswith("postgresql")
    query = (
        "SELECT current_setting('idle_in_transaction_session_timeout')"
        if postgres
        else "SELECT @@session.idle_transaction_timeout"
    )
    with world.persistence.db.read() as connection:
        value = connection.execute(sa.text(query)).scalar_one()
    assert str(value) == ("8s" if postgres else "8")
