"""Actions the browser tests run (module level: stored plans name them by path)."""

from __future__ import annotations

from typing import Any

from dynflow import Action

#: how many steps the wide plan's run flow has
WIDE = 50


class Step(Action):
    def run(self, event: Any = None) -> None:
        self.output["n"] = self.input["n"]


class Wide(Action):
    """A sequence of ten steps then a concurrence of forty: fifty step boxes to draw."""

    def plan(self) -> None:
        with self.sequence():
            for n in range(10):
                self.plan_action(Step, n=n)
            with self.concurrence():
                for n in range(10, WIDE):
                    self.plan_action(Step, n=n)
