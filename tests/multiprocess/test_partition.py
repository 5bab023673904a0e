"""Network partitions (PostgreSQL): executors run on hosts of their own (network
namespaces) and reach the database only through the lab's proxy, whose link to a host
the test cuts like a pulled cable: no packet passes, no connection is closed.

Cut off longer than its lease, an executor is declared dead by the other one, which
takes its plans over and finishes them; the cut-off executor's late results reach the
database once the link heals and are fenced off (not one row of those plans changes),
and it registers again under a new registration and runs new plans. Cut off for
less, nothing happens: its plans finish where they ran.

Needs root and ``ip netns``: skipped without them, failed when CI=true.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import PlanResult, PlanState, World
from dynflow.coordinator import WORLD
from dynflow.persistence.tables import coordinator_records
from tests.conftest import IN_CI, make_url
from tests.lab.hosts import Host, Lab, unavailable
from tests.lab.proxy import Link, LinkThread
from tests.multiprocess.conftest import TIMEOUT, ExecutorProcess, Executors
from tests.multiprocess.remote_actions import Echo, Naps
from tests.multiprocess.test_zombie import FENCED, rows
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]

HEARTBEAT, LEASE = 1.5, 6.0
#: short leases: a world late by two heartbeats that does not answer a ping within
#: 2 s is declared dead (about 5 s after its last heartbeat), one whose lease ran out
#: at once (6 s)
LIVENESS = (
    *("--heartbeat-interval", str(HEARTBEAT), "--lease", str(LEASE)),
    *("--validity-check-interval", "0.5", "--ping-timeout", "2"),
)
#: naps per plan; the one at GATE_AT waits for the test's gate
NAPS, GATE_AT, PLANS = 5, 2, 3


@dataclass
class Site:
    """A host and its proxied way to the database."""

    host: Host
    link: Link
    url: str


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    reason = unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"the multi-host lab cannot run: {reason} (required when CI=true)")
        pytest.skip(f"the multi-host lab cannot run: {reason}")
    with Lab(2) as lab:
        yield lab.hosts


@pytest.fixture
def proxies() -> Iterator[LinkThread]:
    links = LinkThread()
    yield links
    links.close()


@dataclass
class Setup:
    url: str
    starter: Executors
    sites: list[Site]

    def start(self, index: int) -> ExecutorProcess:
        site = self.sites[index]
        return self.starter.start(*LIVENESS, url=site.url, prefix=site.host.command([]))


@pytest.fixture
def lab(
    hosts: list[Host], proxies: LinkThread, executors: Starter, tmp_path: Path
) -> Iterator[Setup]:
    """Two hosts with their links, and a starter of executors on them. Torn down first:
    every link heals, so that the executors terminate cleanly."""
    url = make_url("postgresql", tmp_path)
    direct = sa.make_url(url)
    sites = []
    for host in hosts:
        target = (direct.host or "127.0.0.1", direct.port or 5432)
        link = proxies.add((host.root_address, 0), target, name=host.name)
        proxied = direct.set(host=link.address[0], port=link.address[1])
        sites.append(Site(host, link, proxied.render_as_string(hide_password=False)))
    yield Setup(url, executors(url), sites)
    for site in sites:
        site.link.heal()


def token(url: str, world_id: str) -> str | None:
    """The registration a world's record is under (None: not registered)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            data = connection.execute(
                sa.select(coordinator_records.c.data).where(
                    coordinator_records.c["class"] == WORLD, coordinator_records.c.id == world_id
                )
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    return None if data is None else str(data["token"])


def effects(runs: Path) -> Counter[tuple[str, int, str, str]]:
    """(plan, nap, world, "run" | "done") -> how many times, from the naps' file."""
    if not runs.exists():
        return Counter()
    found: Counter[tuple[str, int, str, str]] = Counter()
    for line in runs.read_text().splitlines():
        plan, index, world, kind = line.split()
        found[plan, int(index), world, kind] += 1
    return found


def nap_worlds(world: World, plan_id: str) -> list[Any]:
    """The world each nap's stored output names, in plan order."""
    plan = world.persistence.load_execution_plan(plan_id)
    naps = sorted((a for a in plan.actions if a.action_class.endswith(".Nap")), key=lambda a: a.id)
    return [a.output.get("world_id") for a in naps]


def history_worlds(url: str, plan_id: str) -> list[str]:
    return [str(entry.world_id) for entry in rows(url, plan_id)["history"]]


def start_held_plans(
    setup: Setup, client: World, tmp_path: Path
) -> tuple[ExecutorProcess, ExecutorProcess, list[Any], Path, Path]:
    """Executor A (host 1) runs PLANS plans, each held at its nap GATE_AT; then
    executor B (host 2) starts."""
    a = setup.start(0)
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    triggered = [
        client.trigger(Naps, count=NAPS, seconds=0.1, runs=str(runs), gate=str(gate), gate_at=2)
        for _ in range(PLANS)
    ]
    held = {(t.execution_plan_id, GATE_AT, a.world_id, "run") for t in triggered}
    eventually(lambda: held <= set(effects(runs)), timeout=TIMEOUT)
    b = setup.start(1)
    return a, b, triggered, runs, gate


@pytest.mark.timeout(120)
def test_a_host_cut_off_longer_than_its_lease_is_taken_over_fenced_off_and_rejoins(
    lab: Setup, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = lab.url
    # the test process is a client world; it leaves the judging of worlds to B
    client = make_world(url, executor=False, validity_check_interval=0)
    a, b, triggered, runs, gate = start_held_plans(lab, client, tmp_path)
    plan_ids = [t.execution_plan_id for t in triggered]
    registration = token(url, a.world_id)
    assert registration is not None

    cut_at = time.monotonic()
    lab.sites[0].link.cut()
    gate.touch()
    # A finishes its held naps during the cut: their results cannot reach the database
    late = {(p, GATE_AT, a.world_id, "done") for p in plan_ids}
    eventually(lambda: late <= set(effects(runs)), timeout=TIMEOUT)

    # B declares A dead and finishes its plans, answering the client's requests
    eventually(lambda: token(url, a.world_id) is None, timeout=LEASE + TIMEOUT)
    for t in triggered:
        plan = t.finished.result(TIMEOUT)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    # the test is about a cut longer than the lease: it lasts that long at least
    time.sleep(max(0.0, LEASE + HEARTBEAT - (time.monotonic() - cut_at)))
    assert a.process.poll() is None
    assert lab.sites[0].link.is_cut
    before = {p: rows(url, p) for p in plan_ids}
    effects_before = effects(runs)

    lab.sites[0].link.heal()
    # A learns it was declared dead and registers again: its executor core wrote (or
    # tried to) what it held before, and dropped the plans
    rejoined = eventually(lambda: token(url, a.world_id), timeout=TIMEOUT)
    assert rejoined != registration
    # not one row of the plans B took changed
    assert {p: rows(url, p) for p in plan_ids} == before
    # A's late results were written, and refused
    assert any(FENCED.format(p) in a.log() for p in plan_ids)
    assert f"world {a.world_id} was declared dead" in a.log()
    live = {w.id for w in lab.starter.observer.find_worlds(active_executors_only=True)}
    assert live == {a.world_id, b.world_id}

    # A runs new plans again (the client sends them round robin)
    def ran_on_a() -> bool:
        plan = client.trigger(Echo, value="after").finished.result(TIMEOUT)
        (echo,) = [x for x in plan.actions if x.action_class.endswith(".Echo")]
        return bool(echo.output["world_id"] == a.world_id)

    eventually(ran_on_a, timeout=TIMEOUT, interval=0.1)

    # still not one row changed; no nap ran again
    assert {p: rows(url, p) for p in plan_ids} == before
    assert effects(runs) == effects_before
    for plan_id in plan_ids:
        history = history_worlds(url, plan_id)
        first_b = history.index(b.world_id)
        assert a.world_id in history[:first_b]
        assert a.world_id not in history[first_b:]  # nothing of A after B took over
        # A's result of the held nap was dropped: its output is B's
        assert nap_worlds(client, plan_id) == [a.world_id] * GATE_AT + [b.world_id] * (
            NAPS - GATE_AT
        )
        done = {
            (index, world): count
            for (plan, index, world, kind), count in effects_before.items()
            if plan == plan_id and kind == "done"
        }
        # each nap took effect once, but the held one: A ended it during the cut,
        # B ran it again (it is idempotent), and only B's result was written
        assert done == {
            **{(i, a.world_id): 1 for i in range(GATE_AT + 1)},
            **{(i, b.world_id): 1 for i in range(GATE_AT, NAPS)},
        }


@pytest.mark.timeout(90)
def test_a_cut_shorter_than_the_lease_recovers_nothing(
    lab: Setup, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = lab.url
    client = make_world(url, executor=False, validity_check_interval=0)
    a, b, triggered, runs, gate = start_held_plans(lab, client, tmp_path)
    plan_ids = [t.execution_plan_id for t in triggered]
    registration = token(url, a.world_id)

    lab.sites[0].link.cut()
    gate.touch()
    time.sleep(1.0)  # the test is about time: well below two heartbeats and the lease
    lab.sites[0].link.heal()

    for t in triggered:
        plan = t.finished.result(TIMEOUT)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert token(url, a.world_id) == registration  # never declared dead
    for plan_id in plan_ids:
        assert set(history_worlds(url, plan_id)) == {a.world_id}
        assert nap_worlds(client, plan_id) == [a.world_id] * NAPS
    assert set(effects(runs).values()) == {1}
    assert {world for (_, _, world, _) in effects(runs)} == {a.world_id}
    assert "recovering" not in b.log()
    assert "declared dead" not in a.log()
