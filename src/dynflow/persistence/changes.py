"""A batch of state changes written in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PlanKey = str
StepKey = tuple[str, int]

#: the columns of a step the executor changes (each batch carries all of them)
STEP_MUTABLE = (
    "state",
    "error",
    "started_at",
    "ended_at",
    "execution_time",
    "real_time",
    "progress_done",
    "attempts",
    "next_attempt_at",
    "errors",
)
#: the columns of a plan the executor changes
PLAN_MUTABLE = ("state", "result", "started_at", "ended_at", "execution_time", "real_time")


@dataclass
class Changes:
    """Everything the executor changed since its last commit.

    Later changes to the same row replace earlier ones, so a batch writes each
    row at most once.
    """

    plans: dict[PlanKey, dict[str, Any]] = field(default_factory=dict)
    steps: dict[StepKey, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[StepKey, Any] = field(default_factory=dict)
    #: inputs whose output references were resolved when their step first ran
    inputs: dict[StepKey, Any] = field(default_factory=dict)
    history: list[tuple[str, datetime, str, str | None]] = field(default_factory=list)
    released_locks: list[tuple[str, str, str]] = field(default_factory=list)
    #: envelopes (receiver id, text) written with a plan's rows, and only with them: the
    #: answer to whoever asked for its execution
    answers: dict[PlanKey, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.plans
            or self.steps
            or self.outputs
            or self.inputs
            or self.history
            or self.released_locks
            or self.answers
        )

    def plan_ids(self) -> set[str]:
        """The plans whose rows this batch writes."""
        return (
            set(self.plans)
            | {plan_id for plan_id, _ in self.steps}
            | {plan_id for plan_id, _ in self.outputs}
            | {plan_id for plan_id, _ in self.inputs}
            | {entry[0] for entry in self.history}
            | set(self.answers)
        )

    def drop_plan(self, plan_id: str) -> None:
        """Forget the changes made to one plan (it could not be started)."""
        self.plans.pop(plan_id, None)
        for key in [k for k in self.steps if k[0] == plan_id]:
            del self.steps[key]
        for key in [k for k in self.outputs if k[0] == plan_id]:
            del self.outputs[key]
        for key in [k for k in self.inputs if k[0] == plan_id]:
            del self.inputs[key]
        self.history = [h for h in self.history if h[0] != plan_id]
        self.answers.pop(plan_id, None)

    def take(self, plan_id: str) -> Changes:
        """Remove one plan's changes (and the locks it releases) from the batch; them."""
        part = Changes(
            plans={k: v for k, v in self.plans.items() if k == plan_id},
            steps={k: v for k, v in self.steps.items() if k[0] == plan_id},
            outputs={k: v for k, v in self.outputs.items() if k[0] == plan_id},
            inputs={k: v for k, v in self.inputs.items() if k[0] == plan_id},
            history=[h for h in self.history if h[0] == plan_id],
            released_locks=[lock for lock in self.released_locks if plan_id in lock[1:]],
            answers={k: v for k, v in self.answers.items() if k == plan_id},
        )
        self.drop_plan(plan_id)
        self.released_locks = [lock for lock in self.released_locks if plan_id not in lock[1:]]
        return part

    def absorb(self, later: Changes) -> None:
        """Add the changes of a later batch (its rows replace this one's)."""
        self.plans.update(later.plans)
        self.steps.update(later.steps)
        self.outputs.update(later.outputs)
        self.inputs.update(later.inputs)
        self.history.extend(later.history)
        self.released_locks.extend(later.released_locks)
        self.answers.update(later.answers)

    def detach(self) -> Changes:
        """Move everything out into a new batch; this one is left empty (the runtimes
        that write into it keep writing here, into the next batch)."""
        batch = Changes(
            self.plans,
            self.steps,
            self.outputs,
            self.inputs,
            self.history,
            self.released_locks,
            self.answers,
        )
        self.plans, self.steps, self.outputs, self.inputs = {}, {}, {}, {}
        self.history, self.released_locks, self.answers = [], [], {}
        return batch

    def clear(self) -> None:
        self.plans.clear()
        self.steps.clear()
        self.outputs.clear()
        self.inputs.clear()
        self.history.clear()
        self.released_locks.clear()
        self.answers.clear()
