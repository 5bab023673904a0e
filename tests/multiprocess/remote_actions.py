"""Actions for executor subprocesses: ``dynflow executor --import <this module>``.

The test and the executor are separate processes, so these actions report through
their output (the world that ran them) and through files named in their input
(markers a test waits for, gates a test opens, run counters).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from dynflow import Action, World
from dynflow.coordinator import Coordinator
from dynflow.executor.threaded import ThreadedExecutor

#: how long a held step waits for its gate before failing (a test never opens it later)
HOLD_LIMIT = 20.0
#: a partition test holds its naps at a gate while it starts a second executor
NAP_GATE_LIMIT = 60.0


def _wait_for(check: Any, what: str, limit: float = HOLD_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {limit}s")
        time.sleep(0.005)  # a gate across processes: files, polled


#: a file named by this variable holds the death notice of the executor's world: its
#: heartbeat finds it was declared dead, and tells the world only once the file exists
DEATH_NOTICE_GATE = "DYNFLOW_TEST_DEATH_NOTICE_GATE"


def _hold_death_notices(gate: Path) -> None:
    beat = Coordinator.heartbeat

    def heartbeat(coordinator: Coordinator, meta: Mapping[str, Any] | None = None) -> bool:
        alive = beat(coordinator, meta)
        if not alive:
            _wait_for(gate.exists, f"gate {gate}")
        return alive

    setattr(Coordinator, "heartbeat", heartbeat)  # noqa: B010 (mypy: no method assignment)


if os.environ.get(DEATH_NOTICE_GATE):
    _hold_death_notices(Path(os.environ[DEATH_NOTICE_GATE]))


def _touch(path: str | None) -> None:
    if path:
        Path(path).touch()


def _count_run(path: str | None, world_id: str) -> None:
    if path:
        with open(path, "a") as runs:
            runs.write(world_id + "\n")


class Echo(Action):
    """Reports the world that ran it, and its input value."""

    def run(self, event: Any = None) -> None:
        self.output["world_id"] = self.world.id
        self.output["value"] = self.input.get("value")


class WaitForEvent(Action):
    """Suspends until an event arrives; keeps the event as ``payload``."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.output["world_id"] = self.world.id
            self.suspend()
        else:
            self.output["payload"] = event
            self.output["event_world_id"] = self.world.id


class Hold(Action):
    """Touches ``entered``, waits until the file ``gate`` exists; counts runs in ``runs``."""

    def run(self, event: Any = None) -> None:
        _count_run(self.input.get("runs"), self.world.id)
        _touch(self.input.get("entered"))
        gate = Path(self.input["gate"])
        _wait_for(gate.exists, f"gate {gate}")
        self.output["world_id"] = self.world.id


class HoldUntilTerminating(Action):
    """Touches ``entered``, then runs until its world has started terminating."""

    def run(self, event: Any = None) -> None:
        _touch(self.input.get("entered"))
        # the world of this process, threaded: its executor core is here
        executor = cast("ThreadedExecutor", cast("World", self.world).executor)
        _wait_for(lambda: executor.core.terminating is not None, "termination")
        self.output["world_id"] = self.world.id


class FinishThenContinue(Action):
    """Two steps in sequence: one still running when its world terminates, then an Echo."""

    def plan(self, entered: str) -> None:
        with self.sequence():
            self.plan_action(HoldUntilTerminating, entered=entered)
            self.plan_action(Echo, value="second")


class SlowEcho(Echo):
    """An Echo on the ``slow`` queue: only executors started with ``--queue slow=N`` run it."""

    queue = "slow"


class IdempotentHold(Hold):
    """A Hold that may run again at once when its world died while it ran."""

    idempotent = True


class HoldPastTermination(Action):
    """Touches ``entered``; once its world has started terminating, touches
    ``terminating`` and waits for ``gate``: its world stays registered, terminating."""

    def run(self, event: Any = None) -> None:
        _touch(self.input.get("entered"))
        executor = cast("ThreadedExecutor", cast("World", self.world).executor)
        _wait_for(lambda: executor.core.terminating is not None, "termination")
        _touch(self.input.get("terminating"))
        gate = Path(self.input["gate"])
        _wait_for(gate.exists, f"gate {gate}")
        self.output["world_id"] = self.world.id


class Nap(Action):
    """One step of :class:`Naps`: appends ``<plan> <index> <world> run`` to ``runs`` when
    it starts and ``... done`` when it ends (its effect); waits for the file ``gate``
    when given one; sleeps ``seconds``. Idempotent: a world that takes a dead world's
    plan over runs an interrupted one again."""

    idempotent = True

    def run(self, event: Any = None) -> None:
        runs, index = self.input["runs"], self.input["index"]
        mark = f"{self.execution_plan_id} {index} {self.world.id}"
        _count_run(runs, f"{mark} run")
        gate = self.input.get("gate")
        if gate:
            _wait_for(Path(gate).exists, f"gate {gate}", limit=NAP_GATE_LIMIT)
        time.sleep(self.input["seconds"])
        _count_run(runs, f"{mark} done")
        self.output["world_id"] = self.world.id


class Naps(Action):
    """``count`` naps in sequence; the one at ``gate_at`` waits for ``gate``."""

    def plan(
        self, count: int, seconds: float, runs: str, gate: str | None = None, gate_at: int = -1
    ) -> None:
        with self.sequence():
            for index in range(count):
                self.plan_action(
                    Nap,
                    index=index,
                    seconds=seconds,
                    runs=runs,
                    gate=gate if index == gate_at else None,
                )
