"""The public surface: what ``dynflow`` and ``dynflow.testing`` export."""

from __future__ import annotations

import inspect

import pytest

import dynflow
import dynflow.testing


def test_dynflow_all_is_pinned() -> None:
    assert sorted(dynflow.__all__) == [
        "Action",
        "ActionRecord",
        "Cancel",
        "Cancellable",
        "ConfigurationError",
        "DynflowError",
        "ExecutionError",
        "ExecutionPlan",
        "HistoryEntry",
        "InvalidTransition",
        "LockTaken",
        "Middleware",
        "NotFound",
        "NotSerializable",
        "OutputReference",
        "PersistenceError",
        "Phase",
        "PhaseContext",
        "PlanResult",
        "PlanState",
        "PlannedAction",
        "PlanningFailed",
        "Polling",
        "Rescue",
        "Singleton",
        "Step",
        "StepError",
        "StepState",
        "SubPlan",
        "SubPlansFailed",
        "SuspendedAction",
        "Triggered",
        "UnknownActionClass",
        "WithSubPlans",
        "World",
        "__version__",
        "plan_hook",
    ]
    assert len(set(dynflow.__all__)) == len(dynflow.__all__)


@pytest.mark.parametrize("name", dynflow.__all__)
def test_every_exported_name_exists(name: str) -> None:
    assert getattr(dynflow, name) is not None


# Names API.md documents at the top level that are implemented today.
API_NAMES = [
    "Action",
    "Rescue",
    "World",
    "Triggered",
    "PlanningFailed",
    "NotFound",
    "DynflowError",
    "Middleware",
    "ExecutionPlan",
    "Step",
    "StepError",
    "PlannedAction",
    "Polling",
    "Cancellable",
    "Cancel",
    "SuspendedAction",
    "WithSubPlans",
]


@pytest.mark.parametrize("name", API_NAMES)
def test_api_names_are_importable_from_dynflow(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dynflow import {name}", namespace)
    assert namespace[name] is getattr(dynflow, name)
    assert name in dynflow.__all__


@pytest.mark.parametrize(
    "name",
    [
        "ConfigurationError",
        "PersistenceError",
        "NotFound",
        "InvalidTransition",
        "PlanningFailed",
        "ExecutionError",
        "UnknownActionClass",
        "NotSerializable",
        "LockTaken",
    ],
)
def test_every_engine_error_is_a_dynflow_error(name: str) -> None:
    assert issubclass(getattr(dynflow, name), dynflow.DynflowError)


def test_rescue_members() -> None:
    assert {r.name for r in dynflow.Rescue} == {"PAUSE", "SKIP", "FAIL"}


def test_world_signature_matches_the_contract() -> None:
    parameters = inspect.signature(dynflow.World).parameters
    assert list(parameters) == [
        "database_url",
        "executor",
        "pool_size",
        "queues",
        "connector",
        "auto_rescue",
        "auto_execute",
        "world_id",
        "config",
    ]
    assert parameters["database_url"].default is None
    assert parameters["executor"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["executor"].default is True
    assert parameters["pool_size"].default == 5
    assert parameters["auto_rescue"].default is True
    assert parameters["auto_execute"].default is True
    assert parameters["config"].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(
    "method", ["trigger", "plan", "execute", "resume", "skip", "halt", "event", "terminate"]
)
def test_world_has_the_documented_methods(method: str) -> None:
    assert callable(getattr(dynflow.World, method))


TESTING_NAMES = [
    "create_action",
    "plan_action",
    "run_action",
    "finalize_action",
    "assert_action_planned",
    "assert_action_planned_with",
    "assert_run_phase",
    "InThreadWorld",
]


@pytest.mark.parametrize("name", TESTING_NAMES)
def test_testing_helpers_are_exported(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dynflow.testing import {name}", namespace)
    assert callable(namespace[name])
    assert name in dynflow.testing.__all__


def test_testing_all_names_exist() -> None:
    for name in dynflow.testing.__all__:
        assert hasattr(dynflow.testing, name), name


def test_in_thread_world_is_a_world() -> None:
    assert issubclass(dynflow.testing.InThreadWorld, dynflow.World)
