"""The world's side of many worlds: its connector, dispatchers and remote requests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dynflow.cluster.answers import plan_answer, plan_from_answer
from dynflow.cluster.client_dispatcher import ClientDispatcher
from dynflow.cluster.connector import Connector
from dynflow.cluster.connector.database import DatabaseConnector
from dynflow.cluster.connector.direct import DirectConnector
from dynflow.cluster.connector.messages import (
    ANY_EXECUTOR,
    Done,
    Envelope,
    Execution,
    Failed,
    Ping,
    Pong,
    Request,
    Response,
    encode,
)
from dynflow.cluster.connector.outbox import Outbox
from dynflow.cluster.executor_dispatcher import ExecutorDispatcher
from dynflow.config import WorldConfig
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import Phase
from dynflow.persistence import Persistence

if TYPE_CHECKING:
    from dynflow.world import World

log = logging.getLogger(__name__)

#: seconds between checks of pending requests (timeouts, receivers gone)
CHECK_INTERVAL = 1.0


def connector_kind(config: WorldConfig, persistence: Persistence) -> str:
    """The configured connector, else the database's default (``direct`` for SQLite)."""
    return config.connector or persistence.default_connector


def make_connector(config: WorldConfig, persistence: Persistence) -> Connector:
    if connector_kind(config, persistence) == "direct":
        return DirectConnector()
    return DatabaseConnector(persistence.envelopes, poll_interval=config.connector_poll_interval)


class Remote:
    """Requests to other worlds and requests from them, for one world."""

    def __init__(self, world: World, connector: Connector) -> None:
        self.world = world
        self.connector = connector
        self.client = ClientDispatcher(world.id, connector, world.coordinator)
        #: answers to other worlds' requests
        self.outbox = Outbox(connector, f"dynflow-outbox-{world.id[:8]}")
        self.served = ExecutorDispatcher(world) if world.config.executor else None

    def start(self) -> None:
        self.outbox.start()
        self.connector.start(self.world.id, self._receive)
        self.world.clock.schedule(CHECK_INTERVAL, self._check)
        if self.served is not None and isinstance(self.connector, DatabaseConnector):
            self._sweep(self.connector)

    def _sweep(self, connector: DatabaseConnector) -> None:
        """Executor worlds drop envelopes left for worlds that are gone, now and then."""
        if self.world._terminated:
            return
        try:
            dropped = connector.drop_orphans()
            if dropped:
                log.info("dropped %d envelopes addressed to worlds that are gone", dropped)
        except Exception:
            log.exception("dropping envelopes of worlds that are gone failed")
        self.world.clock.schedule(
            self.world.config.heartbeat_interval, lambda: self._sweep(connector)
        )

    def stop(self) -> None:
        self.outbox.stop()
        self.connector.stop()
        self.client.fail_all(f"world {self.world.id} terminated before the answer came")

    def request(
        self, receiver_id: str, request: Request, timeout: float | None = None
    ) -> Future[Any]:
        return self.client.request(receiver_id, request, timeout=timeout)

    def handoff(self) -> Handoff | None:
        """For a new plan's execution request written with the plan: with envelopes in
        the database only (the direct connector hands them over in memory)."""
        return Handoff(self) if isinstance(self.connector, DatabaseConnector) else None

    def execute(self, plan_id: str, queues: frozenset[str] | None = None) -> Future[Any]:
        """Hand a plan to an executor world serving its queues; the future gets the
        finished plan."""
        if queues is None:
            try:
                plan = self.world.persistence.load_execution_plan(plan_id)
            except DynflowError as exc:
                failed: Future[Any] = Future()
                failed.set_exception(exc)
                return failed
            queues = plan_queues(plan)
        done = self.client.request(ANY_EXECUTOR, Execution(plan_id), queues=queues)
        return self._finished(plan_id, done)

    def _finished(self, plan_id: str, done: Future[Any]) -> Future[Any]:
        done.add_done_callback(lambda f: self._handed_over(plan_id, f))
        return then(done, lambda answer: self._finished_plan(plan_id, answer))

    def _finished_plan(self, plan_id: str, answer: Any) -> ExecutionPlan:
        """The plan an executor answered with (see ``answers.plan_answer``), or read."""
        plan = plan_from_answer(plan_id, answer)
        return plan if plan is not None else self.world.persistence.find_execution_plan(plan_id)

    def _handed_over(self, plan_id: str, request: Future[Any]) -> None:
        """A failed hand-over leaves no lock of this world behind: the plan waits for
        the next executor to start (or for an explicit execute)."""
        if request.exception() is not None:
            try:
                self.world.coordinator.release(EXECUTION_LOCK, plan_id)
            except DynflowError:
                log.exception("cannot release the lock of plan %s", plan_id)

    def drop_envelopes(self, world_id: str) -> None:
        """Envelopes addressed to a dead world will never be read: delete them."""
        if isinstance(self.connector, DatabaseConnector):
            self.connector.drop_for(world_id)

    def forward_execution(self, plan_id: str, requester: dict[str, Any]) -> bool:
        """Ask an executor world to take over a plan, on behalf of whoever asked for it
        (so that the answer reaches the original caller)."""
        client = requester.get("client_world_id") or self.world.id
        request_id = requester.get("request_id") or str(uuid.uuid4())
        try:
            self.client.send_to_executor(
                lambda target: Envelope(client, target, request_id, Execution(plan_id)),
                frozenset(),
            )
        except DynflowError as exc:
            log.warning("cannot hand over plan %s: %s", plan_id, exc)
            return False
        return True

    def answer_when_done(self, requester: dict[str, Any], future: Future[Any]) -> None:
        """Answer a request another (dead) world accepted once the plan stops here."""
        client, request_id = requester.get("client_world_id"), requester.get("request_id")
        if not client or not request_id or client == self.world.id:
            return

        def answer(done: Future[Any]) -> None:
            error = done.exception()
            reply: Response = (
                Done(plan_answer(done.result())) if error is None else Failed(str(error))
            )
            self.outbox.post(Envelope(self.world.id, client, request_id, reply))

        future.add_done_callback(answer)

    def owner(self, plan_id: str) -> str | None:
        """The world holding the plan's execution lock, if another one does."""
        locks = self.world.coordinator.find_locks(lock_class=EXECUTION_LOCK, id=plan_id)
        owners = [lock.owner_id for lock in locks if lock.owner_id != self.world.id]
        return owners[0] if owners else None

    def _receive(self, envelope: Envelope) -> None:
        if not envelope.is_request():
            self.client.receive(envelope)
        elif self.served is not None:
            self.served.receive(envelope)
        else:  # a client world: alive (it answers pings), but it executes nothing
            reply: Response = (
                Pong()
                if isinstance(envelope.message, Ping)
                else Failed(f"world {self.world.id} is a client world: it executes nothing")
            )
            self.outbox.post(
                Envelope(self.world.id, envelope.sender_id, envelope.request_id, reply)
            )

    def _check(self) -> None:
        if self.world._terminated:
            return
        try:
            if self.client.pending_receivers():
                worlds = self.world.coordinator.find_worlds()
                self.client.update_worlds(worlds)
                alive = {w.id for w in worlds}
                self.client.check(lambda world_id: world_id in alive)
            else:
                self.client.check(lambda _: True)
        except Exception:
            log.exception("checking pending requests failed")
        self.world.clock.schedule(CHECK_INTERVAL, self._check)


class Handoff:
    """A client world's execution request written together with the new plan it is
    for (one statement on PostgreSQL): the executor is picked before the plan is saved.
    """

    def __init__(self, remote: Remote) -> None:
        self._remote = remote
        self._plan: tuple[str, frozenset[str]] | None = None
        self._request: tuple[str, Envelope, Future[Any]] | None = None
        #: the finished plan, once it is saved
        self.future: Future[Any] | None = None

    def envelope(self, plan_id: str, queues: frozenset[str]) -> tuple[str, str] | None:
        """(receiver id, text) of the request to write with the plan; None when no
        executor is known (then it is sent after the plan is saved)."""
        self._plan = (plan_id, queues)
        self._request = self._remote.client.prepare(Execution(plan_id), queues)
        if self._request is None:
            return None
        envelope = self._request[1]
        return envelope.receiver_id, encode(envelope)

    def saved(self, written: bool) -> None:
        """The plan and its lock are saved, the request with them if ``written``."""
        assert self._plan is not None
        plan_id, queues = self._plan
        if self._request is None:
            self.future = self._remote.execute(plan_id, queues)
            return
        request_id, _, done = self._request
        if not written:  # the executor left since the list was read
            self._remote.client.resend(request_id)
        self.future = self._remote._finished(plan_id, done)

    def abandon(self) -> None:
        """The plan was not saved: the request is never sent."""
        if self._request is not None:
            self._remote.client.forget(self._request[0])


def plan_queues(plan: ExecutionPlan) -> frozenset[str]:
    """The queues an executor needs to run the plan's steps."""
    return frozenset(s.queue for s in plan.steps.values() if s.phase is not Phase.PLAN)


def then(future: Future[Any], step: Callable[[Any], Any]) -> Future[Any]:
    """A future of ``step(result)`` once ``future`` succeeds (its error otherwise)."""
    chained: Future[Any] = Future()

    def forward(done: Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            chained.set_exception(error)
            return
        try:
            chained.set_result(step(done.result()))
        except Exception as exc:
            chained.set_exception(exc)

    future.add_done_callback(forward)
    return chained
