"""Actions that ``dynflow plans trigger`` starts in the CLI tests."""

from __future__ import annotations

from typing import Any

from dynflow import Action


class Greet(Action):
    def plan(self, name: str, *, punctuation: str = "!") -> None:
        self.plan_self(name=name, punctuation=punctuation)

    def run(self, event: Any = None) -> None:
        self.output["greeting"] = f"hello {self.input['name']}{self.input['punctuation']}"


class Breaks(Action):
    def run(self, event: Any = None) -> None:
        raise RuntimeError("broken on purpose")


class Refuses(Action):
    def plan(self) -> None:
        raise ValueError("nothing to do here")
