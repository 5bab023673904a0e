"""Actions of ``benchmarks/recovery.py``, imported by its ``dynflow executor`` processes.

Every run of a ``Note`` step appends ``plan step class world`` to the file named in its
input, before returning: the file counts runs, committed or not.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from dynflow import Action


def _note(action: Action, path: str) -> None:
    with open(path, "a") as runs:
        runs.write(
            f"{action.execution_plan_id} {action.step_id} {type(action).__name__} "
            f"{action.world.id}\n"
        )


class Note(Action):
    """Non-idempotent: records its run, then takes a few milliseconds."""

    def run(self, event: Any = None) -> None:
        _note(self, self.input["runs"])
        time.sleep(random.uniform(0.0, self.input.get("spread", 0.02)))
        self.output["world_id"] = self.world.id


class IdempotentNote(Note):
    """May run again at once when its world died while it ran."""

    idempotent = True


class Mixed(Action):
    """Sequence and concurrence of idempotent and non-idempotent steps."""

    def plan(self, runs: str, spread: float = 0.02) -> None:
        with self.sequence():
            self.plan_action(IdempotentNote, runs=runs, spread=spread)
            with self.concurrence():
                self.plan_action(Note, runs=runs, spread=spread)
                self.plan_action(IdempotentNote, runs=runs, spread=spread)
            self.plan_action(Note, runs=runs, spread=spread)


class Held(Action):
    """Non-idempotent: records its run, waits for the file ``gate``, records the end."""

    def run(self, event: Any = None) -> None:
        _note(self, self.input["runs"])
        Path(self.input["entered"]).touch()
        gate = Path(self.input["gate"])
        deadline = time.monotonic() + 120
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.output["world_id"] = self.world.id


class IdempotentHeld(Held):
    """A Held that may run again at once when its world died while it ran."""

    idempotent = True


class Orphan(Action):
    """One step, left running by a world that died (recovery benchmark)."""

    def run(self, event: Any = None) -> None:
        self.output["ran"] = True


class IdempotentOrphan(Orphan):
    """An Orphan run again at once on recovery."""

    idempotent = True
