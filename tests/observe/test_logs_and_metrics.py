"""Observability of a threaded world: its log records (and their ``extra`` fields) and
its Prometheus metrics, on every database."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dynflow import Action, ConfigurationError, PlanResult, PlanState, World
from dynflow.logs import JsonFormatter
from dynflow.observe.metrics import Metrics
from tests.support import Gate, eventually

MakeWorld = Callable[..., World]
TIMEOUT = 15
GATES: dict[str, Gate] = {}


class Noop(Action):
    def run(self, event: Any = None) -> None:
        self.output["ok"] = True


class DiskFull(Action):
    def run(self, event: Any = None) -> None:
        raise ValueError("disk full")


class Chain(Action):
    """Two no-op steps in sequence, then (``fail=True``) a failing one."""

    def plan(self, fail: bool = False) -> None:
        with self.sequence():
            self.plan_action(Noop)
            self.plan_action(Noop)
            if fail:
                self.plan_action(DiskFull)


class Held(Action):
    def run(self, event: Any = None) -> None:
        GATES[self.input["key"]].pass_through()


@pytest.fixture
def gate() -> Iterator[tuple[str, Gate]]:
    key = uuid.uuid4().hex
    GATES[key] = Gate()
    yield key, GATES[key]
    GATES.pop(key).open()


def metrics_of(world: World) -> Metrics:
    metrics = world.observe.metrics
    assert metrics is not None
    return metrics


# -- logs ---------------------------------------------------------------------------


def test_plans_log_start_and_end_and_failed_steps_a_warning_with_fields(
    db_url: str, make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynflow")
    world = make_world(db_url)
    ok = world.trigger(Chain).finished.result(TIMEOUT)
    failed = world.trigger(Chain, fail=True).finished.result(TIMEOUT)
    assert (ok.state, ok.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert (failed.state, failed.result) == (PlanState.PAUSED, PlanResult.ERROR)

    def of(plan_id: str, count: int) -> list[logging.LogRecord]:
        found = [r for r in caplog.records if getattr(r, "plan_id", None) == plan_id]
        assert len(found) >= count, [r.getMessage() for r in found]
        return found

    ok_records = eventually(lambda: of(ok.id, 2), timeout=TIMEOUT)
    # nothing per step at INFO: a plan of two steps logs its start and its end
    assert [(r.levelno, r.name) for r in ok_records] == [(logging.INFO, "dynflow.plans")] * 2
    start, end = ok_records
    assert "starts" in start.getMessage()
    assert (end.label, end.state, end.result) == ("Chain", "stopped", "success")

    failed_records = eventually(lambda: of(failed.id, 3), timeout=TIMEOUT)
    [warning] = [r for r in failed_records if r.levelno == logging.WARNING]
    [step] = [
        s
        for s in failed.steps.values()
        if s.action_class == DiskFull.class_name() and s.phase == "run"
    ]
    fields = json.loads(JsonFormatter().format(warning))
    assert fields["level"] == "WARNING"
    assert fields["plan_id"] == failed.id
    assert fields["step_id"] == step.id
    assert fields["action_class"] == DiskFull.class_name()
    assert fields["exception_class"] == "ValueError"
    assert fields["error_message"] == "disk full"
    assert "disk full" in fields["message"]
    assert failed.id in fields["message"]
    [paused] = [r for r in failed_records if "paused" in r.getMessage()]
    assert (paused.state, paused.result) == ("paused", "error")


# -- metrics --------------------------------------------------------------------------


def test_metrics_count_steps_plans_and_commits_and_read_the_database(
    db_url: str, make_world: MakeWorld
) -> None:
    world = make_world(db_url, metrics=True)
    value = metrics_of(world).registry.get_sample_value
    for _ in range(3):
        world.trigger(Chain).finished.result(TIMEOUT)
    world.trigger(Chain, fail=True).finished.result(TIMEOUT)

    eventually(lambda: value("dynflow_plans_paused_total") == 1, timeout=TIMEOUT)
    eventually(
        lambda: value("dynflow_plans_finished_total", {"result": "success"}) == 3, timeout=TIMEOUT
    )
    noop, disk_full = Noop.class_name(), DiskFull.class_name()
    assert value("dynflow_steps_total", {"action": noop, "result": "success"}) == 8
    assert value("dynflow_steps_total", {"action": disk_full, "result": "error"}) == 1
    assert value("dynflow_step_duration_seconds_count", {"action": noop}) == 8
    assert value("dynflow_plan_duration_seconds_count") == 3
    assert (
        value("dynflow_executor_commits_total") or 0
    ) >= 4  # a plan's start and its end at least
    # read at scrape time from the database and the pools
    assert value("dynflow_plans", {"state": "stopped"}) == 3
    assert value("dynflow_plans", {"state": "paused"}) == 1
    assert value("dynflow_plans", {"state": "running"}) == 0
    assert value("dynflow_pool_size", {"queue": "default"}) == 5
    age = value("dynflow_world_heartbeat_age_seconds", {"world": world.id, "executor": "true"})
    assert age is not None
    assert 0 <= age < 60
    text = generate_latest(metrics_of(world).registry).decode()
    assert "# TYPE dynflow_envelopes_pending gauge" in text
    assert "# TYPE dynflow_queue_waiting_steps gauge" in text


def test_pool_gauges_show_busy_workers_and_waiting_steps(
    sqlite_url: str, make_world: MakeWorld, gate: tuple[str, Gate]
) -> None:
    key, held = gate
    world = make_world(sqlite_url, metrics=True, pool_size=1)
    value = metrics_of(world).registry.get_sample_value
    first = world.trigger(Held, key=key)
    second = world.trigger(Held, key=key)
    assert held.entered.wait(TIMEOUT)

    def one_busy_one_waiting() -> bool:
        return (
            value("dynflow_pool_busy_workers", {"queue": "default"}) == 1
            and value("dynflow_queue_waiting_steps", {"queue": "default"}) == 1
        )

    eventually(one_busy_one_waiting, timeout=TIMEOUT)
    assert value("dynflow_pool_utilisation", {"queue": "default"}) == 1.0
    held.open()
    first.finished.result(TIMEOUT)
    second.finished.result(TIMEOUT)
    eventually(
        lambda: value("dynflow_pool_busy_workers", {"queue": "default"}) == 0, timeout=TIMEOUT
    )
    assert value("dynflow_queue_waiting_steps", {"queue": "default"}) == 0


def test_each_world_has_its_own_registry_and_a_shared_one_is_refused(
    sqlite_url: str, make_world: MakeWorld
) -> None:
    one = make_world(sqlite_url, metrics=True)
    two = make_world(sqlite_url, metrics=True)
    assert metrics_of(one).registry is not metrics_of(two).registry
    shared = CollectorRegistry()
    make_world(sqlite_url, metrics=shared)
    with pytest.raises(ConfigurationError, match="its own registry"):
        make_world(sqlite_url, metrics=shared)
    with pytest.raises(ConfigurationError, match="CollectorRegistry"):
        make_world(sqlite_url, metrics="yes")


def test_metrics_are_off_by_default(sqlite_url: str, make_world: MakeWorld) -> None:
    world = make_world(sqlite_url)
    assert world.observe.metrics is None
    assert world.trigger(Chain).finished.result(TIMEOUT).result is PlanResult.SUCCESS


def test_metrics_without_prometheus_client_is_a_clear_error(
    sqlite_url: str, make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "dynflow.observe.metrics")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ConfigurationError, match=r"pydynflow\[metrics\]"):
        make_world(sqlite_url, metrics=True)
    world = make_world(sqlite_url)  # without metrics, all is well
    assert world.trigger(Chain).finished.result(TIMEOUT).result is PlanResult.SUCCESS
