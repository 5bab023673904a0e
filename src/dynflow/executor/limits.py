"""Limits (``Action.limits``, :class:`dynflow.Limit`): the core's side, and the gate.

Holding rules. A run step of an action with limits starts only once it holds every
one of them (granted together). It holds them from the start of its run until the
run ends (success, error, skipped, cancelled, halted); while suspended it keeps
them (it is still running). A failed attempt that is retried releases them during
its backoff and asks again for the next attempt. A plan that stops, pauses, is
halted or handed over releases its steps' holds and waits.

While it waits, the step is ``waiting`` (``next_attempt_at`` unset: a retry's
backoff sets it) and holds no worker. The requests go to the :class:`LimitGate`,
which batches them: one transaction of the store per batch, on a thread of its own,
and posts :class:`LimitGranted` back to the core. The core never waits for the
database here.

A step waiting in a world that dies loses its place in line: invalidation drops the
dead world's rows, and the executor that recovers the plan asks again (at the end of
the line). Another world is woken through the connector when its first waiting
step may start; a lost wake-up is made up for by a sweep every ``SWEEP_INTERVAL``
seconds, only while the world has steps waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action.registry import class_name
from dynflow.clock import Clock
from dynflow.errors import DynflowError, PersistenceError
from dynflow.execution_plan.model import Step, StepError
from dynflow.execution_plan.states import Phase, StepState
from dynflow.executor import policy
from dynflow.executor.messages import LimitGranted, Message
from dynflow.executor.runtime import PlanRuntime, now
from dynflow.persistence.limits import LimitKey, LimitRequest, LimitStore
from dynflow.serialization import resolve_refs

if TYPE_CHECKING:
    from dynflow.executor.core import ExecutorCore

log = logging.getLogger(__name__)

#: seconds between two sweeps of a world with steps waiting (lost wake-ups)
SWEEP_INTERVAL = 5.0
_RETRY_SECONDS = 0.5

Slot = tuple[str, int]  # (plan, step)


class LimitGate:
    """Asks the store for limits on behalf of one world, in batches.

    Started (:meth:`start`), it has a thread of its own; not started (the inline
    executor), each call is one exchange in the caller's thread.
    """

    def __init__(
        self,
        world_id: str,
        store: LimitStore,
        registration: Callable[[], str],
        clock: Clock,
        post: Callable[[Message], None],
    ) -> None:
        self.world_id = world_id
        self.store = store
        self.registration = registration
        self.clock = clock
        self.post = post
        #: wake other worlds (their first waiting step may start): set by the world
        self.wake: Callable[[set[str]], None] = lambda worlds: None
        self._inbox: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: requests sent and not granted yet, and slots held (the gate's thread only)
        self._waiting: dict[Slot, LimitRequest] = {}
        self._held: set[Slot] = set()
        self._timers: dict[str, datetime] = {}
        self._timers_lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dynflow-limits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(10)

    def acquire(self, request: LimitRequest) -> None:
        self._submit(("acquire", request))

    def release(self, slot: Slot) -> None:
        self._submit(("release", slot))

    def drop_plan(self, plan_id: str) -> None:
        self._submit(("drop", plan_id))

    def poke(self) -> None:
        """Ask again for the steps waiting here (a release elsewhere, a rate window)."""
        self._submit(("retry", None))

    def _submit(self, operation: tuple[str, Any]) -> None:
        if self._thread is None:
            self._process([operation])
        else:
            self._inbox.put(operation)

    def _run(self) -> None:
        while True:
            try:
                first = self._inbox.get(timeout=SWEEP_INTERVAL if self._waiting else None)
            except queue.Empty:
                first = ("retry", None)  # the sweep: a wake-up may have been lost
            batch = []
            item = first
            while item is not None:
                batch.append(item)
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._process(batch)
                except Exception:  # the gate must outlive one bad batch
                    log.exception("world %s: a batch of limit requests failed", self.world_id)
            if item is None:
                return

    def _process(self, batch: list[tuple[str, Any]]) -> None:
        acquire: dict[Slot, LimitRequest] = {}
        release: set[Slot] = set()
        drop: set[str] = set()
        retry = False
        for kind, value in batch:
            if kind == "acquire":
                slot = (value.execution_plan_id, value.step_id)
                if slot not in self._waiting and slot not in self._held:
                    acquire[slot] = self._waiting[slot] = value
            elif kind == "release":
                if acquire.pop(value, None) is None:
                    release.add(value)
                self._waiting.pop(value, None)
                self._held.discard(value)
            elif kind == "drop":
                drop.add(value)
                for slot in [s for s in acquire if s[0] == value]:
                    del acquire[slot]
                for slot in [s for s in self._waiting if s[0] == value]:
                    del self._waiting[slot]
                self._held -= {s for s in self._held if s[0] == value}
            else:
                retry = True
        keys = {k.key for r in self._waiting.values() for k in r.keys} if retry else set()
        if not (acquire or release or drop or keys):
            return
        while True:
            try:
                outcome = self.store.exchange(
                    self.world_id,
                    self.registration(),
                    self.clock.utcnow(),
                    acquire=list(acquire.values()),
                    release=release,
                    drop_plans=drop,
                    retry=keys,
                )
                break
            except PersistenceError as exc:  # kept and tried again: nothing is lost
                if self._stopping:
                    return
                log.error("cannot exchange limits, retrying: %s", exc)
                time.sleep(_RETRY_SECONDS)
        if outcome.fenced:  # declared dead: its rows are gone, its plans too
            self._waiting.clear()
            self._held.clear()
            return
        for slot in outcome.granted:
            if self._waiting.pop(slot, None) is not None:
                self._held.add(slot)
                self.post(LimitGranted(*slot))
        if outcome.wake:
            self.wake(outcome.wake)
        if outcome.more and (outcome.granted or not retry):  # a retry that got nowhere: the sweep
            self._submit(("retry", None))
        for key, due in outcome.due.items():
            self._arm(key, due)

    def _arm(self, key: str, due: datetime) -> None:
        """One timer per key, on the world's clock: when its rate window frees a start."""
        with self._timers_lock:
            armed = self._timers.get(key)
            if armed is not None and armed <= due:
                return
            self._timers[key] = due
        delay = (due - self.clock.utcnow()).total_seconds()
        self.clock.schedule(max(delay, 0.0), partial(self._due, key, due))

    def _due(self, key: str, due: datetime) -> None:
        with self._timers_lock:
            if self._timers.get(key) == due:
                del self._timers[key]
        self.poke()


@dataclass
class LimitBook:
    """The core's record of its steps' limits (the core's thread only)."""

    gate: LimitGate
    requested: set[Slot] = field(default_factory=set)
    granted: set[Slot] = field(default_factory=set)


def hold(core: ExecutorCore, runtime: PlanRuntime, step: Step, event: Any) -> bool | None:
    """Before a run step is handed out: None if it may run now; True if it waits for
    its limits (asked for after the next commit); False if its limit keys cannot be
    formatted (the step failed)."""
    if event is not None or step.phase is not Phase.RUN or step.state is StepState.SUSPENDED:
        return None
    cls = policy.action_class(runtime, step.action_id)
    limits = getattr(cls, "limits", ())
    slot = (runtime.id, step.id)
    book = core.limits
    if not limits or slot in book.granted:
        return None
    if slot in book.requested:
        return True
    action = runtime.actions[step.action_id]
    try:
        value = resolve_refs(action.input, lambda aid: runtime.actions[aid].output)
    except (DynflowError, KeyError):
        return None  # the hand-out fails the step with it
    try:
        keys: dict[str, LimitKey] = {}
        for limit in limits:
            key = limit.key_for(cls.__name__ if cls else action.action_class, value)
            keys.setdefault(key, LimitKey(key, limit.concurrency, limit.rate, limit.per))
    except DynflowError as exc:
        error = StepError(class_name(DynflowError), str(exc))
        runtime.set_step(step, StepState.ERROR, ended_at=now(), error=error)
        return False
    book.requested.add(slot)
    runtime.set_step(step, StepState.WAITING, next_attempt_at=None)
    request = LimitRequest(runtime.id, step.id, tuple(keys.values()))
    core._later(partial(book.gate.acquire, request), runtime.id)
    return True


def granted(core: ExecutorCore, message: LimitGranted) -> None:
    """The store granted a waiting step its limits: hand it out (or give them back)."""
    slot = (message.execution_plan_id, message.step_id)
    book = core.limits
    runtime = core.plans.get(message.execution_plan_id)
    step = None if runtime is None else runtime.steps.get(message.step_id)
    asked = slot in book.requested
    book.requested.discard(slot)
    if (
        not asked
        or runtime is None
        or step is None
        or step.state is not StepState.WAITING
        or core.terminating is not None
    ):
        book.gate.release(slot)  # the step no longer waits here
        return
    book.granted.add(slot)
    core._dispatch(runtime, step.id)
    core._advance(runtime)


def ended(core: ExecutorCore, runtime: PlanRuntime, step: Step) -> None:
    """The step's run ended (or its attempt failed and it backs off): release."""
    slot = (runtime.id, step.id)
    if slot in core.limits.granted:
        core.limits.granted.discard(slot)
        core.limits.gate.release(slot)


def forget(core: ExecutorCore, plan_id: str) -> None:
    """The plan left this executor (stopped, paused, fenced off, disowned): release
    its steps' holds and waits."""
    book = core.limits
    mine = {s for s in book.requested | book.granted if s[0] == plan_id}
    if mine:
        book.requested -= mine
        book.granted -= mine
        book.gate.drop_plan(plan_id)


def give_up(core: ExecutorCore, plan_id: str, step_id: int) -> bool:
    """Withdraw a step's request for its limits; False if it was not waiting for them."""
    slot = (plan_id, step_id)
    if slot not in core.limits.requested:
        return False
    core.limits.requested.discard(slot)
    core.limits.gate.release(slot)
    return True
