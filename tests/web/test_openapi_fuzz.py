"""schemathesis against the console's OpenAPI document: no request makes the server fail.

Every operation of ``/api/openapi.json`` gets generated requests (valid and invalid
parameters, odd ids), authenticated by a Bearer token, over a world with a few plans;
the only check is that no answer is a 5xx.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.core.result import Ok

from dynflow import World
from dynflow.web import TokenAuth, create_app
from tests.web.actions import FAILING, Flaky

TOKEN = "fuzzing-token-123"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
FUZZING = settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "dynflow.sqlite3"
    world = World(f"sqlite:///{path}", terminate_timeout=10)
    try:
        world.trigger(Flaky, key="fine").finished.result(timeout=10)
        key = uuid.uuid4().hex
        FAILING.add(key)
        world.trigger(Flaky, key=key).finished.result(timeout=10)
        yield world
    finally:
        world.terminate()


@pytest.fixture(scope="module")
def console_schema(fuzz_world: World) -> schemathesis.BaseSchema:
    app = create_app(fuzz_world, auth=TokenAuth(TOKEN), wait_seconds=0.2)
    return schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=HEADERS)


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_no_request_makes_the_api_fail(
    fuzz_world: World, console_schema: schemathesis.BaseSchema, mode: schemathesis.GenerationMode
) -> None:
    """Positive mode: requests the document allows, on random and on existing plan ids;
    negative: ones it forbids (they must be refused with a 4xx, not crash)."""
    seen: list[tuple[str, int]] = []

    def fuzz(strategy: SearchStrategy[schemathesis.Case]) -> None:
        @given(case=strategy)
        @FUZZING
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=HEADERS)
            seen.append((case.operation.label, response.status_code))
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        check()

    operations = []
    for result in console_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation schemathesis could not read
        operations.append(result.ok())
    assert len(operations) >= 10
    for operation in operations:
        try:
            fuzz(operation.as_strategy(generation_mode=mode, headers=HEADERS))
        except Unsatisfiable:
            # no parameter the document constrains (a free-form id): nothing to get wrong
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
        if mode is schemathesis.GenerationMode.POSITIVE and "{plan_id}" in operation.path:
            for plan in fuzz_world.persistence.find_execution_plans():
                known = {"plan_id": plan.id}
                fuzz(operation.as_strategy(headers=HEADERS, path_parameters=known))
    labels = {label for label, _ in seen}
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert labels == {operation.label for operation in operations}
        assert 200 in {status for _, status in seen}  # some reached a real plan
    else:
        assert {"GET /api/plans", "POST /api/plans/{plan_id}/steps/{step_id}/skip"} <= labels
    assert 401 not in {status for _, status in seen}  # the token got through
