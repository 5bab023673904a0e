"""A client world in this process, two ``dynflow executor`` processes, one shared database
(PostgreSQL with LISTEN/NOTIFY, MariaDB polling): plans, pings, round robin, events, halt,
and a plan executed by two clients at once runs once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path

import pytest

from dynflow import ExecutionError, ExecutionPlan, NotFound, PlanResult, PlanState, StepState, World
from dynflow.cluster.client_dispatcher import RemoteError
from dynflow.cluster.connector.messages import Execution, Status
from tests.conftest import make_url
from tests.multiprocess.conftest import TIMEOUT, ExecutorProcess, Executors
from tests.multiprocess.remote_actions import Echo, Hold, WaitForEvent
from tests.support import eventually, suspended_step

MakeWorld = Callable[..., World]


@dataclass
class Cluster:
    url: str
    first: ExecutorProcess
    second: ExecutorProcess

    @property
    def ids(self) -> set[str]:
        return {self.first.world_id, self.second.world_id}


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two executor processes on an empty database, for the whole module; the tests use
    only the plans they make."""
    directory = tmp_path_factory.mktemp(f"cluster-{request.param}")
    url = make_url(request.param, directory)
    starter = Executors(url, directory)
    try:
        yield Cluster(url, starter.start(), starter.start())
    finally:
        starter.close()


@pytest.fixture
def client(cluster: Cluster, make_world: MakeWorld) -> World:
    world = make_world(cluster.url, executor=False)
    executors = eventually(lambda: world.coordinator.find_worlds(active_executors_only=True))
    assert {w.id for w in executors} == cluster.ids
    return world


def worlds_in_history(plan: ExecutionPlan) -> set[str | None]:
    return {entry.world_id for entry in plan.execution_history}


def test_a_client_world_triggers_a_plan_that_an_executor_process_runs(
    cluster: Cluster, client: World
) -> None:
    triggered = client.trigger(Echo, value=42)
    plan = triggered.finished.result(TIMEOUT)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    ran_in = plan.entry_action.output["world_id"]
    assert ran_in in cluster.ids
    assert plan.entry_action.output["value"] == 42
    assert [(e.name, e.world_id) for e in plan.execution_history] == [
        ("start execution", ran_in),
        ("finish execution", ran_in),
    ]
    # the client world executes nothing, and holds no lock of the finished plan
    assert client.id not in worlds_in_history(plan)
    assert client.coordinator.find_locks(id=triggered.execution_plan_id) == []


def test_ping_an_executor_process_and_an_unknown_world(cluster: Cluster, client: World) -> None:
    assert client.ping(cluster.first.world_id, timeout=TIMEOUT).result(TIMEOUT) is True
    assert client.ping(cluster.second.world_id, timeout=TIMEOUT).result(TIMEOUT) is True

    unknown = str(uuid.uuid4())
    future = client.ping(unknown)
    assert future.done()  # at once, not after the timeout
    with pytest.raises(NotFound, match=f"world {unknown} is not registered"):
        future.result(0)


def test_plans_from_one_client_go_round_robin_to_both_executors(
    cluster: Cluster, client: World
) -> None:
    triggered = [client.trigger(Echo, value=i) for i in range(8)]
    plans = [t.finished.result(TIMEOUT) for t in triggered]

    assert all(p.result is PlanResult.SUCCESS for p in plans)
    ran_in = Counter(p.entry_action.output["world_id"] for p in plans)
    assert ran_in == {cluster.first.world_id: 4, cluster.second.world_id: 4}
    for plan in plans:
        assert worlds_in_history(plan) == {plan.entry_action.output["world_id"]}
    assert [p.entry_action.output["value"] for p in plans] == list(range(8))


def test_an_event_from_the_client_reaches_a_plan_suspended_in_an_executor_process(
    cluster: Cluster, client: World
) -> None:
    triggered = client.trigger(WaitForEvent)
    plan_id = triggered.execution_plan_id
    step_id = suspended_step(client, plan_id, TIMEOUT)
    assert not triggered.finished.done()
    (lock,) = client.coordinator.find_locks(id=plan_id)
    assert lock.owner_id is not None
    assert client.cluster.request(lock.owner_id, Status(plan_id)).result(TIMEOUT) is True

    delivered = client.event(plan_id, step_id, {"approved": True, "n": [1]})
    assert delivered.result(TIMEOUT) is True
    plan = triggered.finished.result(TIMEOUT)
    assert client.cluster.request(lock.owner_id, Status(plan_id)).result(TIMEOUT) is False

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    output = plan.entry_action.output
    assert output["payload"] == {"approved": True, "n": [1]}
    assert output["event_world_id"] == output["world_id"] in cluster.ids


def test_an_event_to_a_step_that_is_not_suspended_fails_across_processes(
    cluster: Cluster, client: World
) -> None:
    triggered = client.trigger(WaitForEvent)
    step_id = suspended_step(client, triggered.execution_plan_id)

    with pytest.raises(RemoteError, match="no step 999"):
        client.event(triggered.execution_plan_id, 999, "lost").result(TIMEOUT)
    assert client.event(triggered.execution_plan_id, 999, "x", optional=True).result(TIMEOUT) is (
        False
    )
    # the plan is unharmed: the real event still finishes it
    client.event(triggered.execution_plan_id, step_id, "late").result(TIMEOUT)
    assert triggered.finished.result(TIMEOUT).entry_action.output["payload"] == "late"


def test_the_client_halts_a_plan_suspended_in_an_executor_process(
    cluster: Cluster, client: World
) -> None:
    triggered = client.trigger(WaitForEvent)
    step_id = suspended_step(client, triggered.execution_plan_id)
    (lock,) = client.coordinator.find_locks(id=triggered.execution_plan_id)
    executor_id = lock.owner_id
    assert executor_id in cluster.ids

    halted = client.halt(triggered.execution_plan_id).result(TIMEOUT)

    assert (halted.state, halted.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert halted.steps[step_id].state is StepState.ERROR
    assert ("halt execution", executor_id) in [
        (e.name, e.world_id) for e in halted.execution_history
    ]
    finished = triggered.finished.result(TIMEOUT)
    assert (finished.state, finished.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert client.coordinator.find_locks(id=triggered.execution_plan_id) == []


def test_a_plan_executed_by_two_clients_at_once_runs_once(
    cluster: Cluster, make_world: MakeWorld, tmp_path: Path
) -> None:
    one = make_world(cluster.url, executor=False)
    other = make_world(cluster.url, executor=False)
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    plan = one.plan(Hold, gate=str(gate), runs=str(runs), entered=str(tmp_path / "entered"))

    # each client asks a different executor process to execute the same plan
    futures = [
        one.cluster.request(cluster.first.world_id, Execution(plan.id)),
        other.cluster.request(cluster.second.world_id, Execution(plan.id)),
    ]
    done, _ = wait(futures, timeout=TIMEOUT, return_when=FIRST_COMPLETED)
    (refused,) = done  # the step is held: only the refusal can have come
    with pytest.raises(RemoteError, match=f"execution plan {plan.id} is already running"):
        refused.result()
    # the execution lock names the executor, the client world and the request it serves
    (lock,) = one.coordinator.find_locks(id=plan.id)
    winner, client = (
        (cluster.first.world_id, one.id)
        if refused is futures[1]
        else (cluster.second.world_id, other.id)
    )
    assert lock.owner_id == winner
    assert lock.data["client_world_id"] == client
    assert isinstance(lock.data["request_id"], str)
    gate.touch()
    (accepted,) = [f for f in futures if f is not refused]
    answer = accepted.result(TIMEOUT)  # the finished plan's row
    assert answer["id"] == plan.id
    assert answer["plan"]["id"] == plan.id
    assert (answer["plan"]["state"], answer["plan"]["result"]) == ("stopped", "success")

    finished = one.persistence.load_execution_plan(plan.id)
    assert (finished.state, finished.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    ran_in = runs.read_text().split()
    assert len(ran_in) == 1
    assert ran_in == [finished.entry_action.output["world_id"]]
    # the public call from a client now fails clearly, at once: the plan has stopped
    with pytest.raises(ExecutionError, match="is stopped/success: only a plan that is"):
        other.execute(plan.id).result(TIMEOUT)
    assert runs.read_text().split() == ran_in
