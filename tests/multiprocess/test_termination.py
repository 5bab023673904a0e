"""Clean termination of ``dynflow executor`` processes on SIGTERM (PostgreSQL): exit code 0,
the world record and its locks disappear, a running step finishes, and plans paused by
the termination continue in another executor process. And an executor that is killed:
it is invalidated and its plan taken over, answering the original caller."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from dynflow import PlanResult, PlanState, StepState, World
from dynflow.coordinator import EXECUTION_LOCK
from tests.conftest import make_url
from tests.multiprocess.conftest import TIMEOUT, Executors
from tests.multiprocess.remote_actions import (
    Echo,
    FinishThenContinue,
    Hold,
    HoldPastTermination,
    IdempotentHold,
    WaitForEvent,
)
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]


def history(client: World, plan_id: str) -> list[tuple[str, str | None]]:
    plan = client.persistence.load_execution_plan(plan_id)
    return [(entry.name, entry.world_id) for entry in plan.execution_history]


def outputs_by_class(client: World, plan_id: str) -> dict[str, dict[str, object]]:
    plan = client.persistence.load_execution_plan(plan_id)
    return {a.action_class.rsplit(".", 1)[1]: dict(a.output) for a in plan.actions}


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_sigterm_lets_the_running_step_finish_and_hands_the_plan_to_another_executor(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, database: str
) -> None:
    url = make_url(database, tmp_path)
    starter = executors(url)
    first = starter.start()
    client = make_world(url, executor=False)
    entered = tmp_path / "entered"
    triggered = client.trigger(FinishThenContinue, entered=str(entered))
    plan_id = triggered.execution_plan_id
    eventually(entered.exists, timeout=TIMEOUT)
    second = starter.start()  # started after the plan went to the first executor
    (lock,) = client.coordinator.find_locks(lock_class=EXECUTION_LOCK, id=plan_id)
    assert lock.owner_id == first.world_id

    first.signal(signal.SIGTERM)

    assert first.wait() == 0
    assert first.world_id not in {w.id for w in client.coordinator.find_worlds()}
    assert client.coordinator.find_locks(owner_id=first.world_id) == []
    # handed over under the client's request: the second executor answers it when done
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.id, plan.state, plan.result) == (plan_id, PlanState.STOPPED, PlanResult.SUCCESS)
    outputs = outputs_by_class(client, plan_id)
    assert outputs["HoldUntilTerminating"]["world_id"] == first.world_id  # it finished there
    assert outputs["Echo"]["world_id"] == second.world_id
    assert history(client, plan_id) == [
        ("start execution", first.world_id),
        ("pause execution", first.world_id),
        ("start execution", second.world_id),
        ("finish execution", second.world_id),
    ]
    assert "Traceback" not in first.log()
    assert client.coordinator.find_locks(id=plan_id) == []


def test_a_plan_paused_by_termination_waits_for_the_next_executor_to_start(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    first = starter.start()
    client = make_world(url, executor=False)
    entered = tmp_path / "entered"
    plan_id = client.trigger(FinishThenContinue, entered=str(entered)).execution_plan_id
    eventually(entered.exists, timeout=TIMEOUT)

    first.signal(signal.SIGTERM)
    assert first.wait() == 0

    paused = client.persistence.load_execution_plan(plan_id)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.PENDING)
    assert [w.id for w in client.coordinator.find_worlds()] == [client.id]
    assert client.coordinator.find_locks() == []

    second = starter.start()  # recovers the plan paused by the clean termination
    eventually(
        lambda: client.persistence.load_execution_plan(plan_id).state is PlanState.STOPPED,
        timeout=TIMEOUT,
    )
    assert client.persistence.load_execution_plan(plan_id).result is PlanResult.SUCCESS
    assert outputs_by_class(client, plan_id)["Echo"]["world_id"] == second.world_id
    assert history(client, plan_id)[-2:] == [
        ("start execution", second.world_id),
        ("finish execution", second.world_id),
    ]


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_a_request_refused_by_a_terminating_executor_goes_to_a_live_one_at_once(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, database: str
) -> None:
    url = make_url(database, tmp_path)
    starter = executors(url)
    first = starter.start()
    client = make_world(url, executor=False)
    gate, entered, terminating = (tmp_path / name for name in ("gate", "entered", "terminating"))
    held = client.trigger(
        HoldPastTermination, gate=str(gate), entered=str(entered), terminating=str(terminating)
    )
    eventually(entered.exists, timeout=TIMEOUT)
    second = starter.start()
    first.signal(signal.SIGTERM)
    eventually(terminating.exists, timeout=TIMEOUT)  # the first refuses new work now
    eventually(
        lambda: (
            {w.id for w in client.coordinator.find_worlds(active_executors_only=True)}
            == {first.world_id, second.world_id}
        ),
        timeout=TIMEOUT,
    )

    # round robin: one of them is sent to the first executor, still registered
    triggered = [client.trigger(Echo, value=n) for n in range(2)]

    for each in triggered:
        plan = each.finished.result(TIMEOUT)
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
        assert plan.entry_action.output["world_id"] == second.world_id
    assert not held.finished.done()  # the first executor is still terminating meanwhile
    gate.touch()
    assert first.wait() == 0
    plan = held.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_an_idempotent_step_abandoned_by_a_terminating_executor_runs_again_elsewhere(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, database: str
) -> None:
    url = make_url(database, tmp_path)
    starter = executors(url)
    stuck = starter.start(terminate_timeout=0.2)
    client = make_world(url, executor=False)
    gate, entered, runs = tmp_path / "gate", tmp_path / "entered", tmp_path / "runs"
    triggered = client.trigger(IdempotentHold, gate=str(gate), entered=str(entered), runs=str(runs))
    eventually(entered.exists, timeout=TIMEOUT)
    survivor = starter.start()

    stuck.signal(signal.SIGTERM)
    assert stuck.wait() == 0
    gate.touch()  # the step may pass when it runs again

    plan = triggered.finished.result(TIMEOUT)  # answered by the survivor
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert plan.entry_action.output["world_id"] == survivor.world_id
    assert runs.read_text().split() == [stuck.world_id, survivor.world_id]
    assert "abandoning them" in stuck.log()
    assert client.coordinator.find_locks() == []


def test_a_step_still_running_after_the_terminate_timeout_leaves_its_plan_paused(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    stuck = starter.start(terminate_timeout=0.2)
    client = make_world(url, executor=False)
    entered = tmp_path / "entered"
    triggered = client.trigger(Hold, gate=str(tmp_path / "never"), entered=str(entered))
    eventually(entered.exists, timeout=TIMEOUT)

    stuck.signal(signal.SIGTERM)

    assert stuck.wait() == 0  # the abandoned step does not keep the process alive
    plan = triggered.finished.result(TIMEOUT)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = [s for s in plan.steps.values() if s.state is StepState.ERROR]
    assert step.error is not None
    assert "Abnormal termination" in step.error.message
    assert client.coordinator.find_locks() == []
    assert "abandoning them" in stuck.log()


def test_sigint_terminates_an_idle_executor_cleanly(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    idle = executors(url).start()
    client = make_world(url, executor=False)
    assert client.trigger(Echo, value=1).finished.result(TIMEOUT).result is PlanResult.SUCCESS

    idle.signal(signal.SIGINT)

    assert idle.wait() == 0
    assert idle.world_id not in {w.id for w in client.coordinator.find_worlds()}
    assert "SIGINT received: terminating" in idle.log()
    assert f"executor world {idle.world_id} terminated" in idle.log()


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_a_killed_executor_is_invalidated_and_its_plan_taken_over_for_the_original_caller(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, database: str
) -> None:
    url = make_url(database, tmp_path)
    starter = executors(url)
    doomed = starter.start()
    # the client checks for dead worlds often (executors every 5 s)
    client = make_world(url, executor=False, validity_check_interval=0.05)
    gate, entered = tmp_path / "gate", tmp_path / "entered"
    triggered = client.trigger(IdempotentHold, gate=str(gate), entered=str(entered))
    eventually(entered.exists, timeout=TIMEOUT)
    survivor = starter.start()

    doomed.signal(signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    gate.touch()  # the step may pass when it runs again

    plan = triggered.finished.result(TIMEOUT)  # answered by the survivor, not lost

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert plan.entry_action.output["world_id"] == survivor.world_id  # it ran again there
    assert history(client, plan.id) == [
        ("start execution", doomed.world_id),
        ("terminate execution", doomed.world_id),
        ("start execution", survivor.world_id),
        ("finish execution", survivor.world_id),
    ]
    assert doomed.world_id not in {w.id for w in client.coordinator.find_worlds()}
    assert client.coordinator.find_locks(owner_id=doomed.world_id) == []


@pytest.mark.parametrize("database", ["postgresql", "mysql"])
def test_an_event_for_a_plan_between_executors_is_delivered_once_one_takes_it(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, database: str
) -> None:
    url = make_url(database, tmp_path)
    starter = executors(url)
    first = starter.start()
    client = make_world(url, executor=False)
    plan_id = client.trigger(WaitForEvent).execution_plan_id

    def suspended() -> int | None:
        plan = client.persistence.load_execution_plan(plan_id)
        return next((s.id for s in plan.steps.values() if s.state is StepState.SUSPENDED), None)

    step_id: int = eventually(suspended, timeout=TIMEOUT)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    waiting = client.persistence.load_execution_plan(plan_id)
    assert (waiting.state, waiting.result) == (PlanState.PAUSED, PlanResult.PENDING)

    delivered = client.event(plan_id, step_id, "go")  # retried until an executor has it
    assert not delivered.done()
    second = starter.start()

    assert delivered.result(TIMEOUT) is True
    plan = eventually(
        lambda: (
            (p := client.persistence.load_execution_plan(plan_id)).state is PlanState.STOPPED and p
        ),
        timeout=TIMEOUT,
    )
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output["payload"] == "go"
    assert plan.entry_action.output["event_world_id"] == second.world_id
