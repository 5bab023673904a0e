"""Middleware around plan/run/finalize, and the application's transactions in plan/finalize."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from dynflow import (
    Action,
    ConfigurationError,
    Middleware,
    PlanningFailed,
    PlanResult,
    PlanState,
    StepState,
    World,
)

MakeWorld = Callable[..., World]

#: (who, hook, "in"/"out") as middleware and actions are entered and left
EVENTS: list[tuple[str, ...]] = []

HOOKS = ("plan_phase", "plan", "run_phase", "run", "finalize_phase", "finalize")


class Recording(Middleware):
    tag = "?"

    def _around(self, hook: str, *args: Any, **kwargs: Any) -> Any:
        EVENTS.append((self.tag, hook, "in"))
        result = self.pass_(*args, **kwargs)
        EVENTS.append((self.tag, hook, "out"))
        return result

    def plan_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("plan_phase", *args, **kwargs)

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("plan", *args, **kwargs)

    def run_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("run_phase", *args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("run", *args, **kwargs)

    def finalize_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("finalize_phase", *args, **kwargs)

    def finalize(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("finalize", *args, **kwargs)


class WorldA(Recording):
    tag = "A"


class WorldB(Recording):
    tag = "B"


class WorldD(Recording):
    tag = "D"


class WorldE(Recording):
    tag = "E"


class ClassC(Recording):
    tag = "C"


class Traced(Action):
    middleware = [ClassC]

    def plan(self, name: str) -> None:
        EVENTS.append(("action", "plan", name))
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        EVENTS.append(("action", "run", repr(event)))
        self.output["name"] = self.input["name"]

    def finalize(self) -> None:
        EVENTS.append(("action", "finalize", self.output["name"]))


class Rewriting(Middleware):
    """Changes what the phases receive, and adds to the output after ``run``."""

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*[a.upper() for a in args], **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        result = self.pass_("event from middleware")
        self.action.output["audited"] = True
        return result


class Rewritten(Action):
    middleware = [Rewriting]

    def plan(self, name: str) -> None:
        self.plan_self(name=name)

    def run(self, event: Any = None) -> None:
        self.output["name"] = self.input["name"]
        self.output["event"] = event


class DenyRun(Middleware):
    def run_phase(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("denied by policy")


class DenyPlan(Middleware):
    def plan(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("planning denied by policy")


class DenyFinalize(Middleware):
    def finalize(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("finalize denied by policy")


class RunDenied(Action):
    middleware = [DenyRun]

    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class PlanDenied(Action):
    middleware = [DenyPlan]

    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class FinalizeDenied(Action):
    middleware = [DenyFinalize]

    def run(self, event: Any = None) -> None:
        self.output["ran"] = True

    def finalize(self) -> None:
        self.output["finalized"] = True


@pytest.fixture
def events() -> Iterator[list[tuple[str, ...]]]:
    EVENTS.clear()
    yield EVENTS
    EVENTS.clear()


def _wrapped(tags: list[str], hook: str, inner: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The events of ``tags`` (outermost first) wrapping ``inner`` around ``hook``."""
    return (
        [(tag, hook, "in") for tag in tags] + inner + [(tag, hook, "out") for tag in reversed(tags)]
    )


def _expected(tags: list[str], name: str) -> list[tuple[str, ...]]:
    per_phase: dict[str, list[tuple[str, ...]]] = {
        "plan": [("action", "plan", name)],
        "run": [("action", "run", "None")],
        "finalize": [("action", "finalize", name)],
    }
    expected: list[tuple[str, ...]] = []
    for phase, inner in per_phase.items():
        expected += _wrapped(tags, f"{phase}_phase", _wrapped(tags, phase, inner))
    return expected


# -- middleware -----------------------------------------------------------------------


def test_world_middleware_wraps_class_middleware_in_order(
    sqlite_url: str, make_world: MakeWorld, events: list[tuple[str, ...]]
) -> None:
    world = make_world(sqlite_url)
    world.middleware.use(WorldA)
    world.middleware.use(WorldB, before=WorldA)
    assert world.middleware.items == (WorldB, WorldA)

    plan = world.trigger(Traced, "web-1").finished.result(10)

    assert plan.result is PlanResult.SUCCESS
    assert events == _expected(["B", "A", "C"], "web-1")


def test_middleware_placement_with_after_and_replace(
    sqlite_url: str, make_world: MakeWorld, events: list[tuple[str, ...]]
) -> None:
    world = make_world(sqlite_url)
    world.middleware.use(WorldA)
    world.middleware.use(WorldB, before=WorldA)
    world.middleware.use(WorldD, after=WorldB)
    assert world.middleware.items == (WorldB, WorldD, WorldA)
    world.middleware.use(WorldE, replace=WorldD)
    assert list(world.middleware.items) == [WorldB, WorldE, WorldA]

    plan = world.trigger(Traced, "web-2").finished.result(10)

    assert plan.result is PlanResult.SUCCESS
    assert events == _expected(["B", "E", "A", "C"], "web-2")


def test_middleware_stack_refuses_bad_requests(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url)
    with pytest.raises(ConfigurationError, match="WorldA is not in this middleware stack"):
        world.middleware.use(WorldB, before=WorldA)
    with pytest.raises(ConfigurationError, match=r"not a dynflow\.Middleware subclass"):
        world.middleware.use(Traced)  # type: ignore[arg-type]
    world.middleware.use(WorldA)
    with pytest.raises(ConfigurationError, match="at most one of"):
        world.middleware.use(WorldB, before=WorldA, after=WorldA)
    assert world.middleware.items == (WorldA,)


def test_middleware_changes_arguments_through_pass(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url)

    plan = world.trigger(Rewritten, "web-3").finished.result(10)

    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.input == {"name": "WEB-3"}
    assert plan.entry_action.output == {
        "name": "WEB-3",
        "event": "event from middleware",
        "audited": True,
    }


def test_middleware_raising_in_run_phase_fails_the_step(
    sqlite_url: str, make_world: MakeWorld
) -> None:
    world = make_world(sqlite_url)

    plan = world.trigger(RunDenied).finished.result(10)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = plan.steps[plan.entry_action.run_step_id]  # type: ignore[index]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.exception_class == "PermissionError"
    assert step.error.message == "denied by policy"
    assert plan.entry_action.output == {}


def test_middleware_raising_in_plan_fails_planning(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url)

    with pytest.raises(PlanningFailed, match="planning denied by policy") as raised:
        world.trigger(PlanDenied)

    plan = world.persistence.load_execution_plan(raised.value.execution_plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.steps[1].state is StepState.ERROR


def test_middleware_raising_in_finalize_fails_the_finalize_step(
    sqlite_url: str, make_world: MakeWorld
) -> None:
    world = make_world(sqlite_url)

    plan = world.trigger(FinalizeDenied).finished.result(10)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    action = plan.entry_action
    assert plan.steps[action.run_step_id].state is StepState.SUCCESS  # type: ignore[index]
    finalize = plan.steps[action.finalize_step_id]  # type: ignore[index]
    assert finalize.state is StepState.ERROR
    assert finalize.error is not None
    assert finalize.error.message == "finalize denied by policy"
    assert action.output == {"ran": True}


# -- the application's transaction ------------------------------------------------------

app_metadata = sa.MetaData()
items = sa.Table("items", app_metadata, sa.Column("name", sa.String(50), primary_key=True))


class WriteInPlan(Action):
    def plan(self, name: str, fail: bool = False) -> None:
        self.transaction.execute(sa.insert(items).values(name=name))
        if fail:
            raise RuntimeError("planning refused")
        self.plan_self(name=name, transaction=type(self.transaction).__name__)

    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class WriteThenChild(Action):
    def plan(self, name: str, fail_child: bool = False) -> None:
        self.transaction.execute(sa.insert(items).values(name=name))
        self.plan_action(WriteInPlan, f"{name}-child", fail=fail_child)


class WriteInFinalize(Action):
    def plan(self, name: str, fail: bool = False) -> None:
        self.plan_self(name=name, fail=fail)

    def finalize(self) -> None:
        self.transaction.execute(sa.insert(items).values(name=self.input["name"]))
        self.output["transaction"] = type(self.transaction).__name__
        if self.input["fail"]:
            raise RuntimeError("finalize refused")


@pytest.fixture
def app_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """The application's own database: a separate SQLite file."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
    app_metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["engine", "sessionmaker"])
def adapter(request: pytest.FixtureRequest, app_engine: sa.Engine) -> tuple[Any, str]:
    """(the ``transaction_adapter=`` value, the type ``self.transaction`` has)."""
    if request.param == "engine":
        return app_engine, sa.Connection.__name__
    return sessionmaker(bind=app_engine), Session.__name__


def _app_items(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(items.c.name)).scalars())


def test_plan_writes_commit_when_planning_succeeds(
    db_url: str, make_world: MakeWorld, app_engine: sa.Engine, adapter: tuple[Any, str]
) -> None:
    value, transaction_type = adapter
    world = make_world(db_url, transaction_adapter=value)

    plan = world.trigger(WriteInPlan, "kept").finished.result(10)

    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.input["transaction"] == transaction_type
    assert _app_items(app_engine) == ["kept"]


def test_plan_writes_roll_back_when_planning_fails(
    db_url: str, make_world: MakeWorld, app_engine: sa.Engine, adapter: tuple[Any, str]
) -> None:
    world = make_world(db_url, transaction_adapter=adapter[0])

    with pytest.raises(PlanningFailed, match="planning refused"):
        world.trigger(WriteInPlan, "lost", fail=True)
    with pytest.raises(PlanningFailed, match="planning refused"):
        world.trigger(WriteThenChild, "parent", fail_child=True)  # the parent's write too

    assert _app_items(app_engine) == []
    world.trigger(WriteThenChild, "parent").finished.result(10)
    assert _app_items(app_engine) == ["parent", "parent-child"]


def test_finalize_writes_roll_back_when_finalize_raises(
    db_url: str, make_world: MakeWorld, app_engine: sa.Engine, adapter: tuple[Any, str]
) -> None:
    value, transaction_type = adapter
    world = make_world(db_url, transaction_adapter=value)

    failed = world.trigger(WriteInFinalize, "lost", fail=True).finished.result(10)
    done = world.trigger(WriteInFinalize, "kept").finished.result(10)

    assert (failed.state, failed.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = failed.steps[failed.entry_action.finalize_step_id]  # type: ignore[index]
    assert step.state is StepState.ERROR
    assert step.error is not None
    assert step.error.message == "finalize refused"
    assert done.result is PlanResult.SUCCESS
    assert done.entry_action.output == {"transaction": transaction_type}
    assert _app_items(app_engine) == ["kept"]


def test_without_adapter_there_is_no_transaction(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url)
    with pytest.raises(PlanningFailed, match="'NoneType' object has no attribute 'execute'"):
        world.trigger(WriteInPlan, "nowhere")


def test_transaction_adapter_must_be_usable(sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError, match="transaction_adapter must be"):
        World(sqlite_url, transaction_adapter=42)
