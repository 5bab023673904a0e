"""Actions of the benchmarks, importable by executor processes (``--import bench_actions``)."""

from __future__ import annotations

from typing import Any

from dynflow import Action

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
