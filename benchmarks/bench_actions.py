"""Actions of the benchmarks, importable by executor processes (``--import bench_actions``)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from dynflow import Action, Limit, WithSubPlans

STEPS = 10


class Noop(Action):
    def run(self, event: Any = None) -> None:
        pass


class TenSteps(Action):
    def plan(self) -> None:
        with self.sequence():
            for _ in range(STEPS):
                self.plan_action(Noop)


class OneStep(Action):
    def run(self, event: Any = None) -> None:
        pass


class LimitedNoop(Action):
    limits = [Limit("k{n}", concurrency=1)]

    def plan(self, n: int) -> None:
        self.plan_self(n=n)

    def run(self, event: Any = None) -> None:
        pass


class TenLimited(Action):
    """W1 with every step under ``Limit("k{n}", concurrency=1)``."""

    def plan(self, n: int) -> None:
        with self.sequence():
            for _ in range(STEPS):
                self.plan_action(LimitedNoop, n)


class Stamped(Action):
    """One step under one key; records when its run started and ended."""

    limits = [Limit("{key}", concurrency=1)]
    stamps: ClassVar[list[tuple[float, float]]] = []

    def plan(self, key: str, suspend: bool = False) -> None:
        self.plan_self(key=key, suspend=suspend)

    def run(self, event: Any = None) -> None:
        if self.input["suspend"] and event is None:
            self.suspend()
            return
        started = time.perf_counter()
        Stamped.stamps.append((started, time.perf_counter()))


class Parked(Action):
    """Stamped without its limit: one step that suspends (a baseline of plans held)."""

    parked: ClassVar[list[str]] = []

    def plan(self, key: str, suspend: bool = True) -> None:
        self.plan_self(key=key)

    def run(self, event: Any = None) -> None:
        if event is None:
            Parked.parked.append(self.input["key"])
            self.suspend()


class WaitEvent(Action):
    """One step that suspends until it gets an event."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


class FewChildren(WithSubPlans, Action):
    """A parent of ``children`` sub-plans of one no-op step."""

    def plan(self, children: int = 3) -> None:
        self.plan_self(children=children)

    def create_sub_plans(self) -> list[Any]:
        return [self.trigger(OneStep) for _ in range(self.input["children"])]
