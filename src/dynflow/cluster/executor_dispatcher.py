"""The executor dispatcher: handles requests from other worlds through plan control."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

from dynflow.action.registry import class_name
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
    LimitsFreed,
    Ping,
    Pong,
    Response,
    Status,
    encode,
)
from dynflow.cluster.connector.outbox import Outbox
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.executor.commit import LockLost
from dynflow.executor.messages import Reply
from dynflow.services.takeover import ExecutionRequest, take_over_many

if TYPE_CHECKING:
    from dynflow.services.control import PlanControl

log = logging.getLogger(__name__)


class ExecutorDispatcher:
    """Turns requests into plan-control calls, and their outcomes into answers."""

    def __init__(
        self, world_id: str, control: PlanControl, outbox: Outbox, in_commits: bool = False
    ) -> None:
        self.world_id = world_id
        self.control = control
        self.outbox = outbox
        #: the executor writes the ``Done`` answers with the plans' last commits (the
        #: envelopes are rows of the same database); else they are sent after them
        self.in_commits = in_commits

    def receive(self, envelope: Envelope) -> None:
        """A request arrived: answer ``Accepted`` where it takes time, then Done/Failed."""
        match envelope.message:
            case Ping():
                self._respond(envelope, Pong())
            case Status(plan_id):
                self._respond(envelope, ExecutionStatus(plan_id, self.control.running(plan_id)))
            case Execution(plan_id):
                if self.control.pass_on(plan_id, envelope.sender_id, envelope.request_id):
                    return  # terminating: another executor takes it, and answers
                accepted = self._reply(envelope, Accepted())
                reply = self._done_reply(envelope)
                future, answered = self.control.take_over(
                    plan_id, envelope.sender_id, envelope.request_id, encode(accepted), reply
                )
                if not answered:
                    self.outbox.post(accepted)
                future.add_done_callback(partial(self._executed, envelope, plan_id, reply))
            case Event(plan_id, step_id, payload, optional):
                self._when_done(
                    envelope,
                    self.control.event(plan_id, step_id, payload, optional=optional),
                    lambda delivered: delivered,
                )
            case CancelPlan(plan_id):
                try:
                    sent = len(self.control.cancel(plan_id))
                except Exception as exc:
                    self._respond(envelope, Failed(str(exc), class_name(type(exc))))
                else:
                    self._respond(envelope, Done(sent))
            case Halt(plan_id, why):
                self._when_done(envelope, self.control.halt(plan_id, why), lambda plan: plan.id)
            case LimitsFreed():  # one way: no answer
                self.control.limits_freed()
            case other:
                log.warning("dropping %s from %s: not a request", other, envelope.sender_id)

    def receive_executions(self, envelopes: Sequence[Envelope]) -> None:
        """Execution requests read together: taken over together (see
        :mod:`dynflow.services.takeover`), each answered as :meth:`receive` answers it."""
        requests: list[tuple[Envelope, ExecutionRequest, Envelope]] = []
        for envelope in envelopes:
            message = envelope.message
            assert isinstance(message, Execution)
            plan_id = message.execution_plan_id
            if self.control.pass_on(plan_id, envelope.sender_id, envelope.request_id):
                continue  # terminating: another executor takes it, and answers
            accepted = self._reply(envelope, Accepted())
            request = ExecutionRequest(
                plan_id,
                envelope.sender_id,
                envelope.request_id,
                encode(accepted),
                self._done_reply(envelope),
            )
            requests.append((envelope, request, accepted))
        taken = take_over_many(self.control, [request for _, request, _ in requests])
        for (envelope, request, accepted), (future, answered) in zip(requests, taken, strict=True):
            if not answered:
                self.outbox.post(accepted)
            callback = partial(self._executed, envelope, request.plan_id, request.reply)
            future.add_done_callback(callback)

    def _done_reply(self, envelope: Envelope) -> Reply | None:
        """The ``Done`` answer to an execution request, for the executor to write with
        the plan's last commit here: no answer from here for a plan handed over."""
        if not self.in_commits:
            return None

        def answer(plan: ExecutionPlan) -> str | None:
            if self.control.handing_over(plan):
                return None
            return encode(self._reply(envelope, Done(plan_answer(plan))))

        return Reply(envelope.sender_id, answer)

    def _executed(
        self, envelope: Envelope, plan_id: str, reply: Reply | None, done: Future[Any]
    ) -> None:
        """Answer an execution request once its plan stopped or paused here, unless the
        executor wrote the answer with the plan's last commit; not when another world
        answers it: it took the plan over from this one (declared dead), or this
        terminating world handed the plan over or passed the refused request on."""
        error = done.exception()
        if isinstance(error, LockLost):
            return
        if error is None:
            if reply is not None and reply.written:
                return
            if not self.control.handing_over(done.result()):
                self._respond(envelope, Done(plan_answer(done.result())))
            return
        if not self.control.pass_on(plan_id, envelope.sender_id, envelope.request_id):
            self._respond(envelope, Failed(str(error), class_name(type(error))))

    def _when_done(self, envelope: Envelope, future: Future[Any], result: Any) -> None:
        """Answer once ``future`` is done."""

        def answer(done: Future[Any]) -> None:
            error = done.exception()
            if error is None:
                self._respond(envelope, Done(result(done.result())))
            else:
                self._respond(envelope, Failed(str(error), class_name(type(error))))

        future.add_done_callback(answer)

    def _respond(self, envelope: Envelope, response: Response) -> None:
        self.outbox.post(self._reply(envelope, response))

    def _reply(self, envelope: Envelope, response: Response) -> Envelope:
        return Envelope(self.world_id, envelope.sender_id, envelope.request_id, response)
