"""``dynflow executor`` processes and the messages around them: malformed envelopes and
envelopes left for worlds that are gone, an action class the executor cannot import,
queues, worlds that do not answer, client worlds answering pings, and an SQLite file
shared by two processes (the database connector polls)."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dynflow import (
    Action,
    ConfigurationError,
    ExecutionError,
    PlanResult,
    PlanState,
    StepState,
    World,
)
from dynflow.cluster.client_dispatcher import RemoteError
from dynflow.cluster.connector.messages import Status
from dynflow.coordinator import Coordinator
from dynflow.persistence.tables import envelopes
from tests.conftest import make_url
from tests.multiprocess.conftest import TIMEOUT, Executors
from tests.multiprocess.remote_actions import Echo, SlowEcho
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]


class DefinedInTheTestOnly(Action):
    """Importable in this process only: its executor starts where ``tests`` is not a
    package and imports nothing."""

    def run(self, event: Any = None) -> None:
        self.output["world_id"] = self.world.id


def malformed(receiver_id: str) -> list[str]:
    """Envelope rows that must be dropped: not JSON, not an object, unknown message type,
    missing fields, a field of the wrong type, a response nobody asked for."""
    envelope = {"sender_id": "someone", "receiver_id": receiver_id, "request_id": "r-1"}
    return [
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps(envelope | {"message": {"type": "Explode"}}),
        json.dumps(envelope | {"message": {"type": "Event", "execution_plan_id": "p"}}),
        json.dumps({"receiver_id": receiver_id, "message": {"type": "Ping"}}),
        json.dumps(
            envelope | {"message": {"type": "Event", "execution_plan_id": "p", "step_id": "one"}}
        ),
        json.dumps(envelope | {"message": {"type": "Pong"}}),
    ]


def test_malformed_envelopes_are_dropped_and_the_executor_keeps_working(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    executor = executors(url).start()
    client = make_world(url, executor=False)
    rows = malformed(executor.world_id)

    # inserted without a NOTIFY: the executor finds them on its fallback poll
    with client.persistence.db.write() as connection:
        connection.execute(
            sa.insert(envelopes), [{"receiver_id": executor.world_id, "data": d} for d in rows]
        )

    def left() -> int:
        with client.persistence.db.read() as connection:
            query = sa.select(sa.func.count()).where(envelopes.c.receiver_id == executor.world_id)
            return int(connection.execute(query).scalar_one())

    eventually(lambda: left() == 0, timeout=TIMEOUT)
    assert client.ping(executor.world_id, timeout=TIMEOUT).result(TIMEOUT) is True
    plan = client.trigger(Echo, value="after").finished.result(TIMEOUT)
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output["world_id"] == executor.world_id

    log = executor.log()
    assert log.count("dropping malformed envelope") == 6, log
    assert "envelope is not JSON" in log
    assert "unknown message type 'Explode'" in log
    assert "Event message lacks field 'step_id'" in log
    assert "envelope field 'sender_id' is missing" in log
    assert "Event.step_id has the wrong type: 'one'" in log
    assert "Traceback" not in log
    assert executor.process.poll() is None


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_an_executor_drops_envelopes_left_for_worlds_that_are_gone(
    executors: Starter, make_world: MakeWorld, tmp_path: Path, kind: str
) -> None:
    url = make_url(kind, tmp_path)
    observer = make_world(url, executor=False)
    # a registered world that reads no envelopes (it keeps its own), and one that is gone
    bystander = Coordinator(observer.persistence.db, "bystander")
    bystander.register_world(executor=False, queues=(), meta={})
    answer = {"sender_id": "someone", "request_id": "r-1", "message": {"type": "Pong"}}
    rows = [
        {"receiver_id": receiver, "data": json.dumps(answer | {"receiver_id": receiver})}
        for receiver in ("gone-world", "gone-world", "bystander")
    ]
    with observer.persistence.db.write() as connection:
        connection.execute(sa.insert(envelopes), rows)

    executor = executors(url).start()  # it sweeps when it starts (then every heartbeat)

    def receivers() -> list[str]:
        with observer.persistence.db.read() as connection:
            return list(connection.execute(sa.select(envelopes.c.receiver_id)).scalars())

    eventually(lambda: "gone-world" not in receivers(), timeout=TIMEOUT)
    assert receivers() == ["bystander"]
    assert "dropped 2 envelopes addressed to worlds that are gone" in executor.log()
    bystander.unregister_world()


def test_an_action_the_executor_cannot_import_fails_its_step_and_pauses_the_plan(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    without_module = starter.start(imports=(), cwd=elsewhere)
    client = make_world(url, executor=False)

    plan = client.trigger(DefinedInTheTestOnly).finished.result(TIMEOUT)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (step,) = [s for s in plan.steps.values() if s.state is StepState.ERROR]
    assert step.error is not None
    assert step.error.message == (
        f"unknown action class {__name__}.DefinedInTheTestOnly: "
        "is the module imported in this executor?"
    )
    assert "no --import given" in without_module.log()
    assert client.coordinator.find_locks(id=plan.id) == []

    # not lost: an executor that can import the module resumes it
    without_module.signal(signal.SIGTERM)
    assert without_module.wait() == 0
    with_module = starter.start()  # from the repository root: ``tests`` is importable
    resumed = client.resume(plan.id).result(TIMEOUT)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert resumed.entry_action.output["world_id"] == with_module.world_id


def test_plans_go_only_to_executors_serving_their_queues(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    starter = executors(url)
    plain = starter.start()
    slow = starter.start("--queue", "slow=2")
    client = make_world(url, executor=False)
    (record,) = [w for w in client.coordinator.find_worlds() if w.id == slow.world_id]
    assert set(record.queues) == {"default", "slow"}

    plans = [client.trigger(SlowEcho, value=i).finished.result(TIMEOUT) for i in range(4)]
    assert {p.entry_action.output["world_id"] for p in plans} == {slow.world_id}
    assert all(p.result is PlanResult.SUCCESS for p in plans)
    (step,) = [s for s in plans[0].steps.values() if s.phase == "run"]
    assert step.queue == "slow"
    plain_plans = [client.trigger(Echo, value=i).finished.result(TIMEOUT) for i in range(2)]
    assert {p.entry_action.output["world_id"] for p in plain_plans} == {
        plain.world_id,
        slow.world_id,
    }

    slow.signal(signal.SIGTERM)
    assert slow.wait() == 0
    refused = client.trigger(SlowEcho, value="nobody")
    assert refused.finished.done()  # at once: no executor serves the queue
    with pytest.raises(ConfigurationError, match="no executor world is running serving queues"):
        refused.finished.result(0)


def test_a_world_that_does_not_answer_fails_pings_and_requests(
    make_world: MakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "dynflow.cluster.remote.CHECK_INTERVAL", 0.02
    )  # pending requests: checked often
    url = make_url("postgresql", tmp_path)
    client = make_world(url, executor=False)
    # a registered world that never answers, then unregisters
    silent = Coordinator(client.persistence.db, str(uuid.uuid4()))
    silent.register_world(executor=True, queues=("default",), meta={})
    assert client.ping(silent.world_id, timeout=0.1).result(TIMEOUT) is False
    pending = client.cluster.request(silent.world_id, Status("some-plan"))
    assert not pending.done()

    silent.unregister_world()

    with pytest.raises(ExecutionError, match=f"world {silent.world_id} went away"):
        pending.result(TIMEOUT)


def test_a_client_world_answers_pings_but_executes_nothing(
    make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    one, other = make_world(url, executor=False), make_world(url, executor=False)

    assert one.ping(other.id, timeout=TIMEOUT).result(TIMEOUT) is True
    with pytest.raises(RemoteError, match=f"world {other.id} is a client world"):
        one.cluster.request(other.id, Status("some-plan")).result(TIMEOUT)


def test_an_executor_process_on_an_sqlite_file(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("sqlite", tmp_path)
    executor = executors(url).start()
    client = make_world(url, executor=False, connector="database")
    eventually(lambda: client.coordinator.find_worlds(active_executors_only=True))

    assert client.ping(executor.world_id, timeout=TIMEOUT).result(TIMEOUT) is True
    plans = [client.trigger(Echo, value=i).finished.result(TIMEOUT) for i in range(3)]

    assert [(p.state, p.result) for p in plans] == [(PlanState.STOPPED, PlanResult.SUCCESS)] * 3
    assert {p.entry_action.output["world_id"] for p in plans} == {executor.world_id}
    assert [p.entry_action.output["value"] for p in plans] == [0, 1, 2]
    assert "Traceback" not in executor.log()
