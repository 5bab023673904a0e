"""The client dispatcher: sends requests to other worlds and resolves their futures."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dynflow.connector import Connector
from dynflow.connector.messages import (
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
from dynflow.coordinator import Coordinator
from dynflow.errors import ConfigurationError, DynflowError, ExecutionError, NotFound

log = logging.getLogger(__name__)

#: seconds an execution request survives its receiver's death, for another executor
#: to take the plan over and answer it
TAKE_OVER_GRACE = 60.0


class RemoteError(DynflowError):
    """A request failed in the world that handled it."""


@dataclass
class _Pending:
    future: Future[Any]
    receiver_id: str
    request: Request
    deadline: float | None
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
        self._round_robin = itertools.count()

    def request(
        self,
        receiver_id: str,
        request: Request,
        *,
        timeout: float | None = None,
        queues: frozenset[str] = frozenset(),
    ) -> Future[Any]:
        """Send ``request``; the future gets the ``Done`` result (``True`` for a ping).

        ``receiver_id`` may be ``ANY_EXECUTOR``: the next live executor world in
        round-robin order (serving all of ``queues``). A receiver that is not a
        registered world fails the future at once.
        """
        future: Future[Any] = Future()
        try:
            target = self._resolve(receiver_id, queues)
        except DynflowError as exc:
            future.set_exception(exc)
            return future
        request_id = str(uuid.uuid4())
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._pending[request_id] = _Pending(future, target, request, deadline)
        try:
            self.connector.send(Envelope(self.world_id, target, request_id, request))
        except Exception as exc:
            self._finish(request_id, error=exc)
        return future

    def pick_executor(self, queues: frozenset[str]) -> str:
        """The next live executor world serving ``queues`` (round robin)."""
        return self._resolve(ANY_EXECUTOR, queues)

    def _resolve(self, receiver_id: str, queues: frozenset[str]) -> str:
        worlds = self.coordinator.find_worlds(active_executors_only=receiver_id == ANY_EXECUTOR)
        if receiver_id != ANY_EXECUTOR:
            if not any(w.id == receiver_id for w in worlds):
                raise NotFound(f"world {receiver_id} is not registered (is it running?)")
            return receiver_id
        candidates = [w.id for w in worlds if queues <= set(w.queues)]
        if not candidates:
            raise ConfigurationError(
                "no executor world is running"
                + (f" serving queues {', '.join(sorted(queues))}" if queues else "")
                + ": start one with `dynflow executor --database-url URL --import MODULE`"
            )
        return candidates[next(self._round_robin) % len(candidates)]

    def receive(self, envelope: Envelope) -> None:
        """A response arrived."""
        message: Response = envelope.message  # type: ignore[assignment]
        match message:
            case Accepted():
                pass  # the executor has the plan; the future waits for Done or Failed
            case Done(result):
                self._finish(envelope.request_id, result=result)
            case Pong():
                self._finish(envelope.request_id, result=True)
            case ExecutionStatus(_, running):
                self._finish(envelope.request_id, result=running)
            case Failed(error, error_class):
                self._finish(envelope.request_id, error=RemoteError(f"{error_class}: {error}"))

    def check(self, is_alive: Callable[[str], bool]) -> None:
        """Fail requests past their timeout, or whose target world is gone."""
        now = time.monotonic()
        with self._lock:
            items = list(self._pending.items())
        for request_id, pending in items:
            if pending.deadline is not None and now > pending.deadline:
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
