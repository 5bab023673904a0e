"""The messages an executor core handles, one at a time, from its front and workers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor.work import Progress, StepDone

#: the history entry and the error of a plan whose deadline passed
DEADLINE_EXCEEDED = "deadline exceeded"


@dataclass(eq=False)
class Reply:
    """The answer owed to the world that asked for a plan's execution: written in the
    commit that stops or pauses the plan here (one round trip less than an answer sent
    after it), and only if that commit keeps the plan (a plan fenced off is answered
    by the world that took it over)."""

    receiver_id: str
    #: the answer's text for the plan as it stopped; None: no answer from here
    answer: Callable[[ExecutionPlan], str | None]
    #: set (on the core's thread, before the plan's futures resolve) once written
    written: bool = False


@dataclass(frozen=True)
class Start:
    """Execute the plan (or resume it); its execution lock is this world's."""

    plan: ExecutionPlan
    future: Future[ExecutionPlan]
    #: set when recovering the plan of a world that died while executing it
    recovered_from: str | None = None
    recovering: bool = False
    #: the answer to write when the plan stops or pauses (see :class:`Reply`)
    reply: Reply | None = None


@dataclass(frozen=True)
class Adopt:
    """Hold a plan that is not executing (its execution lock is this world's) so that
    ``HaltPlan`` or ``SkipStep`` can change it; nothing of it runs."""

    plan: ExecutionPlan
    future: Future[None]


@dataclass(frozen=True)
class HaltPlan:
    """Stop the plan at once: ``stopped``/``error``, no more steps run. ``why``: the
    history entry and the error of the steps it stops (default: a plain halt)."""

    execution_plan_id: str
    future: Future[ExecutionPlan]
    why: str | None = None


@dataclass(frozen=True)
class SkipStep:
    """Mark a failed step of an adopted paused plan skipped, and its dependants with it."""

    execution_plan_id: str
    step_id: int
    future: Future[ExecutionPlan]


@dataclass(frozen=True)
class RevertPlan:
    """Turn an adopted paused or stopped plan to reverting (``world.revert``)."""

    execution_plan_id: str
    future: Future[ExecutionPlan]


@dataclass(frozen=True)
class DeliverEvent:
    """Deliver ``payload`` to a step: ``run(event=payload)`` once it is suspended."""

    execution_plan_id: str
    step_id: int
    payload: Any
    future: Future[Any]
    #: drop the event silently (future resolved with False) if the step cannot take it
    optional: bool = False


@dataclass(frozen=True)
class StepTimeout:
    """Fail the step if it is still suspended since hand-out ``sequence``."""

    execution_plan_id: str
    step_id: int
    sequence: int
    seconds: float


@dataclass(frozen=True)
class RunTimeout:
    """Fail hand-out ``sequence`` of a step's ``run`` (of plan run ``run``) if it is
    still running: it took longer than ``seconds`` (the action's ``run_timeout``)."""

    execution_plan_id: str
    step_id: int
    sequence: int
    run: int
    seconds: float


@dataclass(frozen=True)
class RetryDue:
    """The next attempt of a ``waiting`` step is due, if it still waits since attempt
    number ``attempts`` (an older timer is ignored)."""

    execution_plan_id: str
    step_id: int
    attempts: int


@dataclass(frozen=True)
class CancelSteps:
    """Send the cancel event to every running or suspended cancellable step of a plan
    (``deadline``: because the plan's deadline passed)."""

    execution_plan_id: str
    reply: Future[list[Future[Any]]]
    deadline: bool = False


@dataclass(frozen=True)
class Terminate:
    """Let running steps end, pause the plans, then resolve ``future``."""

    future: Future[None]


@dataclass(frozen=True)
class Abandon:
    """Terminate now: steps still running are abandoned as abnormally terminated."""


@dataclass(frozen=True)
class Disown:
    """This world was declared dead: other worlds own its plans now. Drop every plan
    without writing anything of it (callers get ``LockLost``; steps still running are
    not heard from), release the execution locks still held under this world's id,
    then call ``register`` (after that commit, before any other message: no plan can
    start between) and resolve ``future``."""

    register: Callable[[], None]
    future: Future[None]


@dataclass(frozen=True)
class LimitGranted:
    """Every limit of the waiting step is held for it now: hand it to a worker."""

    execution_plan_id: str
    step_id: int


@dataclass(frozen=True)
class RetryLimits:
    """Another world released a limit this world's steps may wait for: ask again."""


Message = (
    Start
    | Adopt
    | StepDone
    | Progress
    | DeliverEvent
    | StepTimeout
    | RetryDue
    | RunTimeout
    | CancelSteps
    | HaltPlan
    | SkipStep
    | RevertPlan
    | Terminate
    | Abandon
    | Disown
    | LimitGranted
    | RetryLimits
)


def plan_of(message: object) -> str | None:
    """The id of the plan a message is about (None: about the executor as a whole)."""
    plan = getattr(message, "plan", None)
    if isinstance(plan, ExecutionPlan):
        return plan.id
    plan_id = getattr(message, "execution_plan_id", None)
    return plan_id if isinstance(plan_id, str) else None
