"""The executor dispatcher: handles requests from other worlds with the local executor."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dynflow.cluster.answers import plan_answer
from dynflow.cluster.connector.messages import (
    Accepted,
    CancelPlan,
    Done,
    Envelope,
    Event,
    Execution,
    ExecutionStatus,
    Failed,
    Halt,
    Ping,
    Pong,
    Response,
    Status,
    encode,
)
from dynflow.executor.core import LockLost

if TYPE_CHECKING:
    from dynflow.world import World

log = logging.getLogger(__name__)


class ExecutorDispatcher:
    def __init__(self, world: World) -> None:
        self.world = world

    def receive(self, envelope: Envelope) -> None:
        """A request arrived: answer ``Accepted`` where it takes time, then Done/Failed."""
        match envelope.message:
            case Ping():
                self._respond(envelope, Pong())
            case Status(plan_id):
                running = self.world.executor is not None and self.world.executor.running(plan_id)
                self._respond(envelope, ExecutionStatus(plan_id, running))
            case Execution(plan_id):
                accepted = self._reply(envelope, Accepted())
                future, answered = self.world._execute_here(
                    plan_id, envelope.sender_id, envelope.request_id, encode(accepted)
                )
                if not answered:
                    self.world.remote.outbox.post(accepted)
                self._when_done(envelope, future, plan_answer, unless=LockLost)
            case Event(plan_id, step_id, payload, optional):
                self._when_done(
                    envelope,
                    self.world.event(plan_id, step_id, payload, optional=optional),
                    lambda delivered: delivered,
                )
            case CancelPlan(plan_id):
                try:
                    sent = len(self.world.cancel(plan_id))
                except Exception as exc:
                    kind = type(exc)
                    failed = Failed(str(exc), f"{kind.__module__}.{kind.__qualname__}")
                    self._respond(envelope, failed)
                else:
                    self._respond(envelope, Done(sent))
            case Halt(plan_id):
                self._when_done(envelope, self.world.halt(plan_id), lambda plan: plan.id)
            case other:
                log.warning("dropping %s from %s: not a request", other, envelope.sender_id)

    def _when_done(
        self,
        envelope: Envelope,
        future: Future[Any],
        result: Any,
        unless: type[BaseException] | None = None,
    ) -> None:
        """Answer once ``future`` is done; not at all when it failed with ``unless``."""

        def answer(done: Future[Any]) -> None:
            error = done.exception()
            if unless is not None and isinstance(error, unless):
                # this world was declared dead: the one that took the plan over answers
                # the request (see World._take_over), a failure from here must not win
                return
            if error is None:
                self._respond(envelope, Done(result(done.result())))
            else:
                kind = type(error)
                self._respond(
                    envelope, Failed(str(error), f"{kind.__module__}.{kind.__qualname__}")
                )

        future.add_done_callback(answer)

    def _respond(self, envelope: Envelope, response: Response) -> None:
        self.world.remote.outbox.post(self._reply(envelope, response))

    def _reply(self, envelope: Envelope, response: Response) -> Envelope:
        return Envelope(self.world.id, envelope.sender_id, envelope.request_id, response)
