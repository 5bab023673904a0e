"""A batch of state changes written in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PlanKey = str
StepKey = tuple[str, int]


@dataclass
class Changes:
    """Everything the executor changed since its last commit.

    Later changes to the same row replace earlier ones, so a batch writes each
    row at most once.
    """

    plans: dict[PlanKey, dict[str, Any]] = field(default_factory=dict)
    steps: dict[StepKey, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[StepKey, Any] = field(default_factory=dict)
    history: list[tuple[str, datetime, str, str | None]] = field(default_factory=list)
    released_locks: list[tuple[str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.plans or self.steps or self.outputs or self.history or self.released_locks)

    def clear(self) -> None:
        self.plans.clear()
        self.steps.clear()
        self.outputs.clear()
        self.history.clear()
        self.released_locks.clear()

    def merge(self, other: Changes) -> None:
        self.plans.update(other.plans)
        self.steps.update(other.steps)
        self.outputs.update(other.outputs)
        self.history.extend(other.history)
        self.released_locks.extend(other.released_locks)
