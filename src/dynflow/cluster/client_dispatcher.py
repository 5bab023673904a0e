"""The client dispatcher: sends requests to other worlds and resolves their futures."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dynflow.cluster.connector import Connector
from dynflow.cluster.connector.messages import (
    ANY_EXECUTOR,
    Accepted,
    Done,
    Envelope,
    Execution,
    ExecutionStatus,
    Failed,
    Ping,
    Pong,
    Request,
    Response,
)
from dynflow.coordinator import Coordinator, WorldRecord
from dynflow.errors import ConfigurationError, DynflowError, ExecutionError, NotFound

log = logging.getLogger(__name__)

#: seconds an execution request survives its receiver's death, for another executor
#: to take the plan over and answer it
TAKE_OVER_GRACE = 60.0
#: seconds the list of registered worlds is reused to pick executors (a request that
#: reaches a world gone meanwhile is sent again, see ``ClientDispatcher.check``)
WORLDS_TTL = 1.0
#: the receiver of an execution request that waits for an executor of its code version
WAITING = ""


@dataclass(frozen=True)
class Needs:
    """What an executor world must offer to run a plan: all of ``queues``, and the
    plan's code ``version`` (None: any executor; an executor of version None runs
    plans of any version)."""

    queues: frozenset[str] = frozenset()
    version: str | None = None

    def served_by(self, world: WorldRecord) -> bool:
        """True when ``world`` is an executor that may run the plan."""
        return (
            world.executor
            and self.queues <= set(world.queues)
            and may_run(world.meta.get("code_version"), self.version)
        )


def may_run(world_version: str | None, plan_version: str | None) -> bool:
    """True when an executor of code version ``world_version`` may run a plan of
    ``plan_version``: the same version, or either of them None (any)."""
    return world_version is None or plan_version is None or world_version == plan_version


class NoExecutorOfVersion(ConfigurationError):
    """No live executor world runs the plan's code version (the plan waits for one)."""


class RemoteError(DynflowError):
    """A request failed in the world that handled it (``error_class``: the error's class
    there, by name)."""

    def __init__(self, message: str, error_class: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclass
class _Pending:
    future: Future[Any]
    receiver_id: str
    request: Request
    deadline: float | None
    #: what the receiver must offer (execution requests)
    needs: Needs = Needs()
    #: the receiver asked for: a world id or ``ANY_EXECUTOR``
    wanted: str = ANY_EXECUTOR
    #: when its receiver was found gone (an execution may be taken over meanwhile)
    orphaned_at: float | None = None


class ClientDispatcher:
    """Turns requests into envelopes and responses back into resolved futures."""

    def __init__(self, world_id: str, connector: Connector, coordinator: Coordinator) -> None:
        self.world_id = world_id
        self.connector = connector
        self.coordinator = coordinator
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._turn = 0  # the round robin's next turn
        self._turn_lock = threading.Lock()
        self._worlds: list[WorldRecord] = []
        self._worlds_at = -WORLDS_TTL

    def request(
        self,
        receiver_id: str,
        request: Request,
        *,
        timeout: float | None = None,
        needs: Needs = Needs(),
    ) -> Future[Any]:
        """Send ``request``; the future gets the ``Done`` result (``True`` for a ping).

        ``receiver_id`` may be ``ANY_EXECUTOR``: the next live executor world in
        round-robin order that meets ``needs``; when none runs the plan's code version,
        the request waits (see :meth:`check`) for one to start. A receiver that is not
        a registered world fails the future at once.
        """
        future: Future[Any] = Future()
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = _Pending(future, receiver_id, request, deadline, needs, receiver_id)
        self._dispatch(str(uuid.uuid4()), pending, frozenset())
        return future

    def prepare(self, request: Request, needs: Needs) -> tuple[str, Envelope, Future[Any]] | None:
        """A request to the next executor known to meet ``needs``, for the caller to
        write (with other writes): (request id, envelope, future); None when no executor
        is known. If the write fails or finds the receiver gone, call :meth:`resend`
        or :meth:`forget`."""
        candidates = self._executors(needs, frozenset(), fresh=False)
        if not candidates:
            return None
        target = candidates[self._next_turn() % len(candidates)]
        request_id = str(uuid.uuid4())
        pending = _Pending(Future(), target, request, None, needs, ANY_EXECUTOR)
        with self._lock:
            self._pending[request_id] = pending
        return request_id, Envelope(self.world_id, target, request_id, request), pending.future

    def resend(self, request_id: str) -> None:
        """Send a prepared request that was not written, to another executor."""
        with self._lock:
            pending = self._pending.get(request_id)
        if pending is not None:
            self._worlds_at = -WORLDS_TTL  # its receiver left: read the list again
            self._dispatch(request_id, pending, frozenset([pending.receiver_id]))

    def forget(self, request_id: str) -> None:
        """Drop a prepared request that will never be sent."""
        with self._lock:
            self._pending.pop(request_id, None)

    def _dispatch(
        self, request_id: str, pending: _Pending, avoid: frozenset[str], refresh: bool = True
    ) -> bool:
        """Send a pending request (``ANY_EXECUTOR``: not to one of ``avoid``); False, and
        the future failed, when it cannot be sent. An execution request for which no
        executor of its code version runs waits, its receiver ``WAITING``."""

        def envelope(target: str) -> Envelope:
            pending.receiver_id = target
            with self._lock:  # before sending: the answer may come at once
                self._pending[request_id] = pending
            return Envelope(self.world_id, target, request_id, pending.request)

        try:
            if pending.wanted == ANY_EXECUTOR:
                self.send_to_executor(envelope, pending.needs, avoid, refresh)
            else:
                self.connector.send(envelope(self._resolve(pending.wanted, pending.needs)))
        except NoExecutorOfVersion as exc:
            if pending.receiver_id != WAITING:
                log.info("%s", exc)
            pending.receiver_id = WAITING
            with self._lock:
                self._pending[request_id] = pending
        except Exception as exc:
            with self._lock:
                self._pending.pop(request_id, None)
            if not pending.future.done():
                pending.future.set_exception(exc)
            return False
        return True

    def send_to_executor(
        self,
        envelope: Callable[[str], Envelope],
        needs: Needs,
        avoid: frozenset[str] = frozenset(),
        refresh: bool = True,
    ) -> str:
        """Send ``envelope(target)`` to the next live executor world meeting ``needs``
        (round robin), to another one when the first turns out gone; the target.

        Raises :class:`ConfigurationError` when no executor serves the queues
        (:class:`NoExecutorOfVersion` when the plan has a code version and no executor
        of that version runs). ``refresh``: read the list of worlds again when the one
        kept has no candidate.
        """
        while True:
            target = self._resolve(ANY_EXECUTOR, needs, avoid, refresh)
            try:
                self.connector.send(envelope(target))
                return target
            except NotFound:  # left since the list was read: read it again
                avoid |= {target}
                self._worlds_at = -WORLDS_TTL

    def update_worlds(self, worlds: list[WorldRecord]) -> None:
        """The registered worlds, just read: reused for picking executors for a while."""
        self._worlds, self._worlds_at = worlds, time.monotonic()

    def _registered(self, fresh: bool) -> list[WorldRecord]:
        if fresh or time.monotonic() - self._worlds_at > WORLDS_TTL:
            self.update_worlds(self.coordinator.find_worlds())
        return self._worlds

    def _resolve(
        self,
        receiver_id: str,
        needs: Needs,
        avoid: frozenset[str] = frozenset(),
        refresh: bool = True,
    ) -> str:
        if receiver_id != ANY_EXECUTOR:  # never judged on a list that may be old
            if not any(w.id == receiver_id for w in self._registered(fresh=True)):
                raise NotFound(f"world {receiver_id} is not registered (is it running?)")
            return receiver_id
        candidates = self._executors(needs, avoid, fresh=False)
        if not candidates and refresh:
            candidates = self._executors(needs, avoid, fresh=True)
        if not candidates:
            queues = needs.queues
            serving = f" serving queues {', '.join(sorted(queues))}" if queues else ""
            if needs.version is not None:
                raise NoExecutorOfVersion(
                    f"no executor world of code version {needs.version} is running{serving}:"
                    f" the plan waits for one (`dynflow executor --code-version {needs.version}`)"
                )
            raise ConfigurationError(
                f"no executor world is running{serving}: start one with "
                "`dynflow executor --database-url URL --import MODULE`"
            )
        return candidates[self._next_turn() % len(candidates)]

    def takes_turn(self, world_id: str, needs: Needs) -> bool:
        """True, and the round robin's turn taken, when world ``world_id`` is the next
        executor world known to meet ``needs`` (a plan it runs itself); else the turn
        is left to the next :meth:`request`, which sends to that next world."""
        candidates = self._executors(needs, frozenset(), fresh=False)
        with self._turn_lock:
            if not candidates or candidates[self._turn % len(candidates)] != world_id:
                return False
            self._turn += 1
            return True

    def _next_turn(self) -> int:
        with self._turn_lock:
            self._turn += 1
            return self._turn - 1

    def executors(self, needs: Needs, avoid: frozenset[str]) -> list[str]:
        """The live executor worlds meeting ``needs``, but ``avoid``, as registered now."""
        return self._executors(needs, avoid, fresh=True)

    def _executors(self, needs: Needs, avoid: frozenset[str], fresh: bool) -> list[str]:
        return [w.id for w in self._registered(fresh) if w.id not in avoid and needs.served_by(w)]

    def receive(self, envelope: Envelope) -> None:
        """A response arrived."""
        message: Response = envelope.message  # type: ignore[assignment]
        match message:
            case Accepted():
                # the executor has the plan (maybe another one than asked: a terminating
                # world handed it over); the future waits for its Done or Failed
                with self._lock:
                    pending = self._pending.get(envelope.request_id)
                    if pending is not None:
                        pending.receiver_id = envelope.sender_id
                        pending.orphaned_at = None
            case Done(result):
                self._finish(envelope.request_id, result=result)
            case Pong():
                self._finish(envelope.request_id, result=True)
            case ExecutionStatus(_, running):
                self._finish(envelope.request_id, result=running)
            case Failed(error, error_class):
                self._finish(
                    envelope.request_id,
                    error=RemoteError(f"{error_class}: {error}", error_class),
                )

    def check(self, is_alive: Callable[[str], bool]) -> None:
        """Fail requests past their timeout, or whose target world is gone."""
        now = time.monotonic()
        with self._lock:
            items = list(self._pending.items())
        for request_id, pending in items:
            if pending.receiver_id == WAITING:  # an executor of its version may run now
                self._dispatch(request_id, pending, frozenset(), refresh=False)
            elif pending.deadline is not None and now > pending.deadline:
                if isinstance(pending.request, Ping):
                    self._finish(request_id, result=False)
                else:
                    self._finish(
                        request_id,
                        error=TimeoutError(
                            f"no answer from world {pending.receiver_id} to "
                            f"{type(pending.request).__name__} in time"
                        ),
                    )
            elif not is_alive(pending.receiver_id):
                if isinstance(pending.request, Execution):
                    if self._send_again(request_id, pending):
                        continue
                    # the world invalidating the dead one hands the plan to an executor
                    # that answers this very request: give it time to do so
                    pending.orphaned_at = pending.orphaned_at or now
                    if now - pending.orphaned_at < TAKE_OVER_GRACE:
                        continue
                self._finish(
                    request_id,
                    error=ExecutionError(
                        f"world {pending.receiver_id} went away before answering "
                        f"{type(pending.request).__name__}"
                    ),
                )

    def _send_again(self, request_id: str, pending: _Pending) -> bool:
        """An execution request whose receiver went away before taking the plan (this
        world still holds the plan's lock) goes to another executor, as a new request
        (an answer from the first receiver, if it comes after all, is ignored)."""
        assert isinstance(pending.request, Execution)
        if pending.wanted != ANY_EXECUTOR:
            return False
        plan_id = pending.request.execution_plan_id
        if self.coordinator.execution_lock_owner(plan_id) != self.world_id:
            return False
        with self._lock:
            if self._pending.pop(request_id, None) is None:
                return True  # answered meanwhile
        gone = pending.receiver_id
        if self._dispatch(str(uuid.uuid4()), pending, frozenset([gone])) and (
            pending.receiver_id != WAITING
        ):
            log.warning(
                "world %s went away before taking plan %s: sent it to world %s",
                gone,
                plan_id,
                pending.receiver_id,
            )
        return True

    def pending_receivers(self) -> set[str]:
        with self._lock:
            return {p.receiver_id for p in self._pending.values()}

    def fail_all(self, reason: str) -> None:
        with self._lock:
            ids = list(self._pending)
        for request_id in ids:
            self._finish(request_id, error=ExecutionError(reason))

    def _finish(
        self, request_id: str, *, result: Any = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            pending = self._pending.pop(request_id, None)
        if pending is None or pending.future.done():
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)
