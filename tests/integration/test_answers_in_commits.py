"""An executor world writes the ``Done`` answer to an execution request with the
commit that stops or pauses the plan (where envelopes are rows of the same
database): the client learns of the end one round trip sooner, and nothing is
answered for a plan whose last commit did not land."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dynflow import Action, PlanResult, PlanState, World
from dynflow.cluster.answers import plan_answer
from dynflow.cluster.connector.direct import DirectConnector
from dynflow.cluster.connector.messages import Done, Envelope
from tests.integration.test_poison import Faulty, Work, refuse_poison

MakeWorld = Callable[..., World]
TIMEOUT = 20.0


class Fails(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("no luck")


def _worlds(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch, url: str, **executor: Any
) -> tuple[World, list[Envelope]]:
    """A client world, and the envelopes an executor world's outbox is given (both
    with the database connector unless told otherwise)."""
    connector = executor.setdefault("connector", "database")
    world = make_world(url, **executor)
    client = make_world(url, executor=False, connector=connector)
    posted: list[Envelope] = []
    post = world.cluster.outbox.post

    def spy(envelope: Envelope) -> None:
        posted.append(envelope)
        post(envelope)

    monkeypatch.setattr(world.cluster.outbox, "post", spy)
    return client, posted


def test_the_answer_comes_with_the_last_commit_not_after_it(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, posted = _worlds(make_world, monkeypatch, db_url)

    succeeded = client.trigger(Work, ok=1).finished.result(TIMEOUT)
    failed = client.trigger(Fails).finished.result(TIMEOUT)

    assert (succeeded.state, succeeded.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert succeeded.entry_action.output == {"ok": 1}
    assert (failed.state, failed.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert [e for e in posted if isinstance(e.message, Done)] == []


def test_a_plan_paused_because_its_changes_cannot_be_written_is_answered_paused(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer goes with the commit that pauses the plan from its last committed
    state, not with the refused one."""
    faulty = Faulty(db_url, refuse_poison)
    client, posted = _worlds(make_world, monkeypatch, db_url, persistence=faulty)

    good = client.trigger(Work, ok=1)
    bad = client.trigger(Work, poison=True)

    paused = bad.finished.result(TIMEOUT)
    assert (paused.state, paused.result) == (PlanState.PAUSED, PlanResult.ERROR)
    assert good.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert [e for e in posted if isinstance(e.message, Done)] == []


def test_an_answer_that_cannot_be_built_in_the_commit_is_sent_after_it(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, posted = _worlds(make_world, monkeypatch, db_url)
    calls: list[str] = []

    def fails_once(plan: Any) -> Any:
        calls.append(plan.id)
        if len(calls) == 1:
            raise ValueError("cannot encode")
        return plan_answer(plan)

    monkeypatch.setattr("dynflow.cluster.executor_dispatcher.plan_answer", fails_once)
    triggered = client.trigger(Work, ok=1)

    assert triggered.finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert calls == [triggered.execution_plan_id] * 2  # in the commit, then after it
    assert [e.request_id for e in posted if isinstance(e.message, Done)] != []


def test_a_world_whose_envelopes_do_not_go_through_the_database_answers_after_the_commit(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, posted = _worlds(make_world, monkeypatch, db_url, connector="direct")
    assert isinstance(client.connector, DirectConnector)

    assert client.trigger(Work, ok=1).finished.result(TIMEOUT).result is PlanResult.SUCCESS
    assert len([e for e in posted if isinstance(e.message, Done)]) == 1
