"""A world's link to the other worlds: its connector, both dispatchers and the outbox.

The :class:`Cluster` sends requests (execute this plan on some executor, deliver
an event to the world that runs a plan, ping a world) and hands the requests it
receives to its executor dispatcher, or answers them itself in a client world.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dynflow import futures
from dynflow.action.registry import class_name
from dynflow.cluster.answers import plan_answer, plan_from_answer
from dynflow.cluster.client_dispatcher import ClientDispatcher, Needs
from dynflow.cluster.connector import Connector
from dynflow.cluster.connector.database import DatabaseConnector
from dynflow.cluster.connector.direct import DirectConnector
from dynflow.cluster.connector.messages import (
    ANY_EXECUTOR,
    Done,
    Envelope,
    Event,
    Execution,
    Failed,
    LimitsFreed,
    Ping,
    Pong,
    Request,
    Response,
    encode,
)
from dynflow.cluster.connector.outbox import Outbox
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import DynflowError, PlanInTransit
from dynflow.execution_plan.model import ExecutionPlan, PlanDetails
from dynflow.execution_plan.states import Phase

if TYPE_CHECKING:
    from dynflow.config import WorldConfig
    from dynflow.persistence import PersistencePort
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: seconds between checks of pending requests (timeouts, receivers gone)
CHECK_INTERVAL = 1.0

#: the class of the error that says a plan is between executors (``PlanInTransit``)
IN_TRANSIT = class_name(PlanInTransit)

#: seconds a terminating world waits for the plans it handed over to be taken
HAND_OVER_WAIT = 10.0
HAND_OVER_POLL = 0.05

#: a world that serves requests from others (the executor dispatcher)
Serve = Callable[[Envelope], None]
ServeMany = Callable[[Sequence[Envelope]], None]


def connector_kind(config: WorldConfig, persistence: PersistencePort) -> str:
    """``direct`` for SQLite (one process), ``database`` elsewhere, unless configured."""
    return config.connector or persistence.default_connector


def make_connector(
    config: WorldConfig, persistence: PersistencePort, given: str | Connector | None = None
) -> Connector:
    """The ``given`` connector, or the one the configuration names."""
    if given is not None and not isinstance(given, str):
        return given
    if connector_kind(config, persistence) == "direct":
        return DirectConnector()
    return DatabaseConnector(
        persistence.envelopes,
        poll_interval=config.connector_poll_interval,
        durable_claims=config.executor,  # a client world reads only answers
    )


def answers_in_commits(connector: Connector, persistence: PersistencePort) -> bool:
    """True when envelopes travel as rows of the world's own database: then an executor
    writes the answer to an execution request with the plan's last commit."""
    return isinstance(connector, DatabaseConnector) and connector.store is persistence.envelopes


def connector_name(connector: str | Connector | None) -> str | None:
    """The name of a connector's kind, for the configuration (None: the default)."""
    if connector is None or isinstance(connector, str):
        return connector
    return "database" if connector.reaches_other_processes else "direct"


class Cluster:
    """Requests to other worlds and requests from them, for one world."""

    def __init__(self, ports: Ports, connector: Connector) -> None:
        self.world_id = ports.world_id
        self.connector = connector
        self.coordinator = ports.coordinator
        self.persistence = ports.persistence
        self.clock = ports.clock
        #: how often an executor world drops envelopes of worlds that are gone
        self.sweep_interval = ports.config.heartbeat_interval
        self.client = ClientDispatcher(self.world_id, connector, self.coordinator)
        #: answers to other worlds' requests
        self.outbox = Outbox(connector, f"dynflow-outbox-{self.world_id[:8]}")
        #: the executor dispatcher, in an executor world (see :meth:`serve`)
        self._serve: Serve | None = None
        self._serve_executions: ServeMany | None = None
        self._stopped = False
        #: plans handed over while terminating -> the world holding the lock until the
        #: new executor takes it
        self._handed: dict[str, str] = {}

    def serve(self, serve: Serve, serve_executions: ServeMany | None = None) -> None:
        """Hand requests from other worlds to ``serve`` (before :meth:`start`); execution
        requests read together, to ``serve_executions`` (if given)."""
        self._serve = serve
        self._serve_executions = serve_executions

    def start(self) -> None:
        self.outbox.start()
        self.connector.start(self.world_id, self._receive, self._receive_batch)
        self.clock.schedule(CHECK_INTERVAL, self._check)
        if self._serve is not None and self.connector.reaches_other_processes:
            self._sweep()

    def stop(self) -> None:
        self._stopped = True
        self.outbox.stop()
        self.connector.stop()
        self.client.fail_all(f"world {self.world_id} terminated before the answer came")

    # -- requests to other worlds ---------------------------------------------------

    def request(
        self, receiver_id: str, request: Request, timeout: float | None = None
    ) -> Future[Any]:
        return self.client.request(receiver_id, request, timeout=timeout)

    def ping(self, world_id: str, timeout: float) -> Future[bool]:
        """True when ``world_id`` answers in time; a world id that is not registered
        fails the future at once."""
        if world_id == self.world_id:
            return futures.resolved(True)
        return self.request(world_id, Ping(), timeout=timeout)

    def handoff(self) -> Handoff | None:
        """For a new plan's execution request written with the plan: with envelopes in
        the database only (the direct connector hands them over in memory)."""
        return Handoff(self) if self.connector.reaches_other_processes else None

    def execute(self, plan_id: str, needs: Needs | None = None) -> Future[Any]:
        """Hand a plan to an executor world serving its queues and code version (when
        none of its version runs, the request waits for one); the future gets the
        finished plan."""
        if needs is None:
            try:
                needs = plan_needs(self.persistence.load_execution_plan(plan_id))
            except DynflowError as exc:
                return futures.failed(exc)
        done = self.client.request(ANY_EXECUTOR, Execution(plan_id), needs=needs)
        return self._finished(plan_id, done)

    def _finished(self, plan_id: str, done: Future[Any]) -> Future[Any]:
        done.add_done_callback(lambda f: self._handed_over(plan_id, f))
        return futures.then(done, lambda answer: self._finished_plan(plan_id, answer))

    def _finished_plan(self, plan_id: str, answer: Any) -> ExecutionPlan:
        """The plan the executor answered with (its details read on first access), or
        read when the answer has no plan."""
        plan = plan_from_answer(plan_id, answer, lambda: self._details(plan_id))
        return plan if plan is not None else self.persistence.find_execution_plan(plan_id)

    def _details(self, plan_id: str) -> PlanDetails:
        plan = self.persistence.load_execution_plan(plan_id)
        return PlanDetails(plan.steps, plan.actions, plan.execution_history)

    def _handed_over(self, plan_id: str, request: Future[Any]) -> None:
        """A failed hand-over leaves no lock of this world behind: the plan waits for
        the next executor to start (or for an explicit execute)."""
        if request.exception() is not None:
            try:
                self.coordinator.release(EXECUTION_LOCK, plan_id)
            except DynflowError:
                log.exception("cannot release the lock of plan %s", plan_id)

    def forward_execution(
        self, plan_id: str, requester: dict[str, Any], avoid: frozenset[str] = frozenset()
    ) -> bool:
        """Ask an executor world (not one of ``avoid``: e.g. worlds found dead) to take
        over a plan, on behalf of whoever asked for it (so that the answer reaches the
        original caller)."""
        client = requester.get("client_world_id") or self.world_id
        request_id = requester.get("request_id") or str(uuid.uuid4())
        try:
            self._send_execution(plan_id, client, request_id, avoid=avoid)
        except DynflowError as exc:
            log.warning("cannot hand over plan %s: %s", plan_id, exc)
            return False
        return True

    def _send_execution(
        self,
        plan_id: str,
        client: str,
        request_id: str,
        plan: ExecutionPlan | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> str:
        """Send request ``request_id`` of world ``client`` to execute the plan to another
        executor world serving its queues and version; the target. Raises when there is
        none."""
        if plan is None:
            plan = self.persistence.load_execution_plan(plan_id)
        return self.client.send_to_executor(
            lambda target: Envelope(client, target, request_id, Execution(plan_id)),
            plan_needs(plan),
            avoid | {self.world_id},
        )

    def pass_on(self, plan_id: str, client: str, request_id: str) -> bool:
        """An execution request that reached this world while it terminates goes on to
        another executor world, for the same requester (who gets the answer from there);
        False when no other executor world runs."""
        try:
            target = self._send_execution(plan_id, client, request_id)
        except DynflowError as exc:
            log.warning("cannot pass plan %s on to another executor: %s", plan_id, exc)
            return False
        log.info("terminating: passed plan %s on to world %s", plan_id, target)
        self._handed[plan_id] = client
        return True

    def hand_over(self, plan_ids: list[str]) -> None:
        """This world is terminating: each plan it paused goes to another executor world
        under the request it was executing (the execution lock's data), as when a world
        dies, so that the caller's future gets the finished plan. The lock passes to the
        requesting world, from which the new executor takes it, so that no other world
        picks the plan up meanwhile. With no other executor world, the caller gets the
        paused plan, which waits for the next executor to start. Returns once the plans
        are taken (or after ``HAND_OVER_WAIT`` seconds): until then the requesters see
        this world alive and do not send their requests again."""
        for plan_id in plan_ids:
            try:
                self._hand_over(plan_id)
            except DynflowError as exc:
                log.warning("cannot hand plan %s over: %s", plan_id, exc)
        deadline = time.monotonic() + HAND_OVER_WAIT
        while self._handed and time.monotonic() < deadline:
            for plan_id, holder in list(self._handed.items()):
                if self.coordinator.execution_lock_owner(plan_id) != holder:
                    del self._handed[plan_id]  # taken by its new executor
            if self._handed:
                time.sleep(HAND_OVER_POLL)
        if self._handed:
            log.warning("plans %s not taken over yet: leaving them", ", ".join(self._handed))

    def _hand_over(self, plan_id: str) -> None:
        locks = self.coordinator.find_locks(
            lock_class=EXECUTION_LOCK, id=plan_id, owner_id=self.world_id
        )
        if not locks:
            return  # fenced off: another world owns it
        requester = dict(locks[0].data)
        plan = self.persistence.load_execution_plan(plan_id)
        if not self.client.executors(plan_needs(plan), frozenset([self.world_id])):
            log.info("no other executor world for plan %s: it waits, paused", plan_id)
            self._answer(requester, Done(plan_answer(plan)))
            return
        client, request_id = requester.get("client_world_id"), requester.get("request_id")
        if not (
            client
            and request_id
            and client != self.world_id
            and self.coordinator.hand_lock(EXECUTION_LOCK, plan_id, client, requester)
        ):  # nobody waits for it elsewhere: the new executor takes the lock from here
            client, request_id = self.world_id, str(uuid.uuid4())
        target = self._send_execution(plan_id, client, request_id, plan)
        self._handed[plan_id] = client
        log.info("terminating: handed plan %s over to world %s", plan_id, target)

    def _answer(self, requester: dict[str, Any], reply: Response) -> None:
        client, request_id = requester.get("client_world_id"), requester.get("request_id")
        if client and request_id and client != self.world_id:
            self.outbox.post(Envelope(self.world_id, client, request_id, reply))

    def answer_when_done(
        self,
        requester: dict[str, Any],
        future: Future[Any],
        withhold: Callable[[ExecutionPlan], bool] | None = None,
    ) -> None:
        """Answer a request another (dead) world accepted once the plan stops here (not
        with a plan that ``withhold`` says is handed over: its new executor answers)."""

        def answer(done: Future[Any]) -> None:
            error = done.exception()
            if error is None and withhold is not None and withhold(done.result()):
                return
            reply: Response = (
                Done(plan_answer(done.result())) if error is None else Failed(str(error))
            )
            self._answer(requester, reply)

        future.add_done_callback(answer)

    def wake_limits(self, world_ids: set[str]) -> None:
        """Tell worlds that a limit their steps wait for may have room now."""
        for world_id in sorted(world_ids - {self.world_id}):
            self.outbox.post(Envelope(self.world_id, world_id, uuid.uuid4().hex, LimitsFreed()))

    def drop_envelopes(self, world_id: str) -> None:
        """Envelopes addressed to a dead world will never be read: delete them."""
        self.connector.drop_for(world_id)

    # -- requests from other worlds -------------------------------------------------

    def _receive_batch(self, envelopes: Sequence[Envelope]) -> None:
        """Envelopes read together, handled in order; runs of execution requests go to
        the executor dispatcher together (their take-over is one statement)."""
        executions: list[Envelope] = []
        for envelope in envelopes:
            if self._serve_executions is not None and isinstance(envelope.message, Execution):
                executions.append(envelope)
                continue
            self._serve_together(executions)
            executions = []
            self._receive_one(envelope)
        self._serve_together(executions)

    def _serve_together(self, executions: list[Envelope]) -> None:
        if len(executions) == 1 or self._serve_executions is None:
            for envelope in executions:
                self._receive_one(envelope)
        elif executions:
            try:
                self._serve_executions(executions)
            except Exception:
                log.exception("handling %d execution requests failed", len(executions))

    def _receive_one(self, envelope: Envelope) -> None:
        try:
            self._receive(envelope)
        except Exception:
            log.exception("handling an envelope from %s failed", envelope.sender_id)

    def _receive(self, envelope: Envelope) -> None:
        if not envelope.is_request():
            self.client.receive(envelope)
        elif isinstance(envelope.message, LimitsFreed):
            if self._serve is not None:
                self._serve(envelope)
        elif self._serve is not None:
            self._serve(envelope)
        else:  # a client world: alive (it answers pings), but it executes nothing
            reply: Response = Failed(
                f"world {self.world_id} is a client world: it executes nothing"
            )
            if isinstance(envelope.message, Ping):
                reply = Pong()
            elif isinstance(envelope.message, Event):  # it holds the plan's lock
                reply = Failed(
                    f"execution plan {envelope.message.execution_plan_id} is on its way to "
                    f"an executor world from world {self.world_id}: send the event again",
                    IN_TRANSIT,
                )
            self.outbox.post(
                Envelope(self.world_id, envelope.sender_id, envelope.request_id, reply)
            )

    # -- housekeeping ---------------------------------------------------------------

    def _check(self) -> None:
        if self._stopped:
            return
        try:
            if self.client.pending_receivers():
                worlds = self.coordinator.find_worlds()
                self.client.update_worlds(worlds)
                alive = {w.id for w in worlds}
                self.client.check(lambda world_id: world_id in alive)
            else:
                self.client.check(lambda _: True)
        except Exception:
            log.exception("checking pending requests failed")
        self.clock.schedule(CHECK_INTERVAL, self._check)

    def _sweep(self) -> None:
        """Executor worlds drop envelopes left for worlds that are gone, now and then."""
        if self._stopped:
            return
        try:
            dropped = self.connector.drop_orphans()
            if dropped:
                log.info("dropped %d envelopes addressed to worlds that are gone", dropped)
        except Exception:
            log.exception("dropping envelopes of worlds that are gone failed")
        self.clock.schedule(self.sweep_interval, self._sweep)


class Handoff:
    """A client world's execution request written together with the new plan it is
    for (one statement on PostgreSQL): the executor is picked before the plan is saved.
    """

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._plan: tuple[str, Needs] | None = None
        self._request: tuple[str, Envelope, Future[Any]] | None = None
        #: the finished plan, once it is saved
        self.future: Future[Any] | None = None

    def envelope(self, plan_id: str, needs: Needs) -> tuple[str, str] | None:
        """(receiver id, text) of the request to write with the plan; None when no
        executor is known (then it is sent after the plan is saved)."""
        self._plan = (plan_id, needs)
        self._request = self._cluster.client.prepare(Execution(plan_id), needs)
        if self._request is None:
            return None
        envelope = self._request[1]
        return envelope.receiver_id, encode(envelope)

    def saved(self, written: bool) -> None:
        """The plan and its lock are saved, the request with them if ``written``."""
        assert self._plan is not None
        plan_id, needs = self._plan
        if self._request is None:
            self.future = self._cluster.execute(plan_id, needs)
            return
        request_id, _, done = self._request
        if not written:  # the executor left since the list was read
            self._cluster.client.resend(request_id)
        self.future = self._cluster._finished(plan_id, done)

    def abandon(self) -> None:
        """The plan was not saved: the request is never sent."""
        if self._request is not None:
            self._cluster.client.forget(self._request[0])


def plan_queues(plan: ExecutionPlan) -> frozenset[str]:
    """The queues an executor needs to run the plan's steps."""
    return frozenset(s.queue for s in plan.steps.values() if s.phase is not Phase.PLAN)


def plan_needs(plan: ExecutionPlan) -> Needs:
    """What an executor needs to run the plan: its queues and its code version."""
    return Needs(plan_queues(plan), plan.code_version)
