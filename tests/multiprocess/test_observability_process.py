"""Observability across processes: a client world's trace continues in an executor
process (the trace context travels with the plan), and ``dynflow executor`` serves
its metrics (``--metrics-port``) and logs JSON (``--log-format json``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dynflow import PlanResult, World
from tests.conftest import make_url
from tests.multiprocess.conftest import ACTIONS, TIMEOUT, Executors
from tests.multiprocess.remote_actions import Echo
from tests.support import eventually

MakeWorld = Callable[..., World]
Starter = Callable[[str], Executors]


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # a line still being written (no newline yet) is read on the next try
    return [
        json.loads(line)
        for line in path.read_text().splitlines(keepends=True)
        if line.endswith("\n") and line.strip()
    ]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_the_executor_process_continues_the_clients_trace(
    kind: str,
    executors: Starter,
    make_world: MakeWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    url = make_url(kind, tmp_path)
    spans_file = tmp_path / "executor-spans.jsonl"
    monkeypatch.setenv("DYNFLOW_TEST_SPANS", str(spans_file))
    executor = executors(url).start(imports=(ACTIONS, "tests.multiprocess.span_file"))
    provider, exporter = spans
    client = make_world(url, executor=False, tracing=provider)

    with provider.get_tracer("test").start_as_current_span("caller") as caller:
        triggered = client.trigger(Echo, value="traced")
    plan = triggered.finished.result(TIMEOUT)
    assert plan.result is PlanResult.SUCCESS
    assert plan.entry_action.output["world_id"] == executor.world_id
    trace_id = format(caller.get_span_context().trace_id, "032x")

    # the answer is written by the plan's last commit: the executor may end and export
    # the plan's span just after the client has it
    def executed() -> tuple[dict[str, Any], dict[str, Any]] | None:
        found = read_spans(spans_file)
        top = next((s for s in found if s["name"] == "execution plan Echo"), None)
        run = next((s for s in found if s["attributes"].get("dynflow.phase") == "run"), None)
        return None if top is None or run is None else (top, run)

    top, run = eventually(executed, timeout=TIMEOUT)
    assert top["trace_id"] == trace_id
    assert top["parent_id"] == format(caller.get_span_context().span_id, "016x")
    assert top["attributes"]["dynflow.plan_id"] == plan.id
    assert top["attributes"]["dynflow.result"] == "success"
    assert run["trace_id"] == trace_id
    assert run["parent_id"] == top["span_id"]
    [step] = [s for s in plan.steps.values() if s.phase == "run"]
    assert run["attributes"] == {
        "dynflow.plan_id": plan.id,
        "dynflow.step_id": step.id,
        "dynflow.action_class": Echo.class_name(),
        "dynflow.phase": "run",
        "dynflow.result": "success",
    }
    # the plan phase ran in the client: its span is there, a child of the caller
    [planned] = [s for s in exporter.get_finished_spans() if s.name == "plan Echo"]
    assert planned.parent is not None
    assert planned.parent.span_id == caller.get_span_context().span_id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_executor_serves_metrics_and_logs_json(
    executors: Starter, make_world: MakeWorld, tmp_path: Path
) -> None:
    url = make_url("postgresql", tmp_path)
    port = free_port()
    executor = executors(url).start("--metrics-port", str(port), "--log-format", "json")
    client = make_world(url, executor=False)
    plan = client.trigger(Echo, value="measured").finished.result(TIMEOUT)
    assert plan.result is PlanResult.SUCCESS

    def scraped() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
        assert 'dynflow_plans_finished_total{result="success"} 1.0' in text
        return text

    text = eventually(scraped, timeout=TIMEOUT)
    action = Echo.class_name()
    assert f'dynflow_steps_total{{action="{action}",result="success"}} 1.0' in text
    assert 'dynflow_pool_size{queue="default"} 5.0' in text

    def logged() -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in executor.log().splitlines() if line.startswith("{")]
        return [e for e in entries if e.get("plan_id") == plan.id and e["level"] == "INFO"]

    records = eventually(lambda: len(logged()) == 2 and logged(), timeout=TIMEOUT)
    assert [r["logger"] for r in records] == ["dynflow.plans", "dynflow.plans"]
    assert records[1]["result"] == "success"
    assert records[1]["label"] == "Echo"


def test_metrics_port_without_prometheus_client_says_which_extra(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dynflow.sqlite3'}"
    code = (
        "import sys; sys.modules['prometheus_client'] = None; "  # as if not installed
        f"sys.argv = ['dynflow', 'executor', '--database-url', {url!r}, '--metrics-port', '1']; "
        "from dynflow.cli.main import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'pydynflow[metrics]'" in done.stderr
    assert not (tmp_path / "dynflow.sqlite3").exists()  # refused before starting a world
