"""Execution requests that an executor world reads together are taken over together
(one statement on PostgreSQL), each still answered on its own: a request that cannot
be taken fails alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from dynflow import Action, PlanResult, World
from dynflow.cluster.client_dispatcher import RemoteError
from dynflow.cluster.connector.messages import Execution
from dynflow.persistence.records import TakeOver
from tests.integration.test_connector import _envelopes_for
from tests.support import eventually

MakeWorld = Callable[..., World]
TIMEOUT = 20.0


class WhereAmI(Action):
    def run(self, event: Any = None) -> None:
        self.output["world_id"] = self.world.id


def test_execution_requests_read_together_are_taken_over_together(
    db_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = make_world(db_url, connector="database")
    client = make_world(db_url, executor=False, connector="database")
    batches: list[list[str]] = []
    take_over_plans = executor.persistence.take_over_plans

    def spy(owner: str, requests: Sequence[TakeOver]) -> Any:
        batches.append([r.plan_id for r in requests])
        return take_over_plans(owner, requests)

    monkeypatch.setattr(executor.persistence, "take_over_plans", spy)
    # the executor's connector reads nothing until every request is written
    store = executor.connector.store  # type: ignore[attr-defined]
    claim, open_ = store.claim, threading.Event()

    def held_claim(world_id: str, limit: int, durable: bool = True) -> Any:
        assert open_.wait(TIMEOUT)
        return claim(world_id, limit, durable)

    monkeypatch.setattr(store, "claim", held_claim)

    triggered = [client.trigger(WhereAmI) for _ in range(4)]
    refused = client.cluster.request(executor.id, Execution("no-such-plan"), timeout=TIMEOUT)
    eventually(lambda: len(_envelopes_for(client, executor.id)) == 5)
    open_.set()

    for t in triggered:
        plan = t.finished.result(TIMEOUT)
        assert plan.result is PlanResult.SUCCESS
        assert plan.entry_action.output["world_id"] == executor.id
    with pytest.raises(RemoteError, match="no-such-plan"):
        refused.result(TIMEOUT)
    plan_ids = [t.execution_plan_id for t in triggered]
    assert [*plan_ids, "no-such-plan"] in batches  # one take-over, in the order sent
