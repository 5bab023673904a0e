"""Helpers for tests: waiting on conditions without bare sleeps, and gates for steps."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dynflow.execution_plan.states import StepState
from dynflow.serialization import to_json_value


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Retry ``check`` until it returns a truthy value (returned) or stops raising."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            problem: BaseException | None = None
        except AssertionError as exc:
            problem = exc
        if time.monotonic() > deadline:
            if problem is not None:
                raise problem
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def suspended_step(world: Any, plan_id: str, timeout: float = 10.0) -> int:
    """Wait until the plan (read through ``world.persistence``) has a suspended step;
    its id."""

    def find() -> int | None:
        plan = world.persistence.load_execution_plan(plan_id)
        return next((s.id for s in plan.steps.values() if s.state is StepState.SUSPENDED), None)

    step_id: int = eventually(find, timeout=timeout)
    return step_id


class Gate:
    """Lets a test hold a running step until it says so."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def pass_through(self, timeout: float = 20.0) -> None:
        self.entered.set()
        if not self.opened.wait(timeout):
            raise TimeoutError("gate was never opened")

    def open(self) -> None:
        self.opened.set()


def thaw(value: Any) -> Any:
    """A plain JSON copy of a (read-only) input value."""
    return to_json_value(value, "value")


@dataclass
class Box:
    """What the actions of one test report to it (by ``key``), and the hooks it gives them.

    Tests keep their boxes in a module-level dict the actions read; ``boxes_fixture``
    registers one per test and opens its gates afterwards.
    """

    key: str
    runs: Counter[str] = field(default_factory=Counter)
    hooks: dict[str, Callable[[Any], object]] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gate(self, name: str) -> Gate:
        """A gate that holds the step called ``name`` when it runs."""
        gate = self.gates[name] = Gate()
        self.hooks[name] = lambda action: gate.pass_through()
        return gate


B = TypeVar("B", bound=Box)


def registered_box(kind: type[B], boxes: dict[str, Any]) -> Iterator[B]:
    """Body of a ``box`` fixture: a fresh box of ``kind`` in ``boxes`` for one test."""
    found = kind(uuid.uuid4().hex)
    boxes[found.key] = found
    yield found
    for gate in found.gates.values():
        gate.open()  # never leave a worker blocked
    del boxes[found.key]
