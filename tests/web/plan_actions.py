"""Actions the plan page tests run (module level: stored plans name them by path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dynflow import Action, WithSubPlans
from dynflow.action.sub_plans import SubPlan
from tests.web.actions import Waiting

#: values of ``n`` whose Leaf fails (and so pauses its plan)
FAILING_N: set[str] = set()


class Leaf(Action):
    """Copies its input ``n`` to its output; fails while ``n`` is in FAILING_N."""

    def run(self, event: Any = None) -> None:
        if str(self.input["n"]) in FAILING_N:
            raise RuntimeError(f"leaf {self.input['n']} failed")
        self.output["n"] = self.input["n"]


class Other(Leaf):
    """A Leaf of another class (breaks runs of the same action in a sequence)."""


class Refs(Action):
    """A concurrence of two leaves, the second reading the first's output, then a third."""

    def plan(self) -> None:
        with self.sequence():
            with self.concurrence():
                first = self.plan_action(Leaf, n=1)
                self.plan_action(Leaf, n=first.output["n"])
            self.plan_action(Other, n=3)


class Fan(Action):
    """One leaf, then a concurrence of ``count`` leaves, then one more."""

    def plan(self, count: int) -> None:
        with self.sequence():
            self.plan_action(Other, n="start")
            with self.concurrence():
                for n in range(count):
                    self.plan_action(Leaf, n=n)
            self.plan_action(Other, n="end")


class Big(Action):
    """A sequence of ``groups`` alike concurrences of ten leaves."""

    def plan(self, groups: int, payload: str = "") -> None:
        with self.sequence():
            for group in range(groups):
                with self.concurrence():
                    for n in range(10):
                        cls = Leaf if n % 2 else Other
                        self.plan_action(cls, n=f"{group}-{n}", payload=payload)


class Parent(WithSubPlans, Action):
    """``count`` child plans of one Leaf each."""

    def create_sub_plans(self) -> Iterator[SubPlan]:
        for n in range(self.input["count"]):
            yield self.trigger(Leaf, n=f"{self.input['prefix']}-{n}")


class WaitThenFan(Action):
    """A Waiting step, then a concurrence of ``count`` Waiting steps (a group node)."""

    def plan(self, count: int) -> None:
        with self.sequence():
            self.plan_action(Waiting, n="head")
            with self.concurrence():
                for n in range(count):
                    self.plan_action(Waiting, n=n)
