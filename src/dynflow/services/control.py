"""Plan control: execute, resume, halt, skip, deliver events to and cancel plans.

Every operation on an existing plan goes through :class:`PlanControl`. Where the
plan is matters, and one decision, :meth:`PlanControl.route`, says where: *here*
(this world's executor runs it, or this world holds its execution lock), at the
*owner* (another world holds the lock: the request goes there) or *nobody* (no
world runs it: the operation is done on the stored plan, under its lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dynflow import futures
from dynflow.action.base import Action
from dynflow.action.registry import class_name
from dynflow.cluster.client_dispatcher import RemoteError, may_run
from dynflow.cluster.connector.messages import CancelPlan as CancelRequest
from dynflow.cluster.connector.messages import Event as EventRequest
from dynflow.cluster.connector.messages import Halt as HaltRequest
from dynflow.cluster.remote import Cluster, plan_needs
from dynflow.coordinator import EXECUTION_LOCK
from dynflow.errors import (
    ConfigurationError,
    DynflowError,
    ExecutionError,
    LockTaken,
    NotFound,
    NotSerializable,
    PlanInTransit,
    ValueTooLarge,
)
from dynflow.execution_plan.model import ExecutionPlan, PlanAttributes
from dynflow.execution_plan.states import PlanResult, PlanState, StepState
from dynflow.executor import Executor, offline
from dynflow.executor.messages import Reply
from dynflow.serialization import check_size, to_json_value
from dynflow.services import takeover
from dynflow.services.left import last_executor, left_running

if TYPE_CHECKING:
    from dynflow.services.delayed import DelayedPlans
    from dynflow.services.planning import Planner
    from dynflow.services.ports import Ports

#: seconds ``event`` sends an event again while its plan is between executors
EVENT_RETRY_FOR = 30.0
#: seconds before the first retry (doubling, up to one second)
EVENT_RETRY_INTERVAL = 0.05

#: states of plans that recovery may pick up (paused: only paused by a termination)


@dataclass(frozen=True)
class Here:
    """This world runs the plan (or is starting it: it holds the execution lock)."""


@dataclass(frozen=True)
class Owner:
    """Another world holds the plan's execution lock."""

    world_id: str


@dataclass(frozen=True)
class Nobody:
    """No world runs the plan."""


Route = Here | Owner | Nobody


class PlanControl:
    """Operations on plans, routed to where each plan is."""

    def __init__(
        self,
        ports: Ports,
        executor: Executor | None,
        cluster: Cluster,
        planner: Planner,
        delayed: DelayedPlans,
        on_finished: Callable[[ExecutionPlan], None],
        *,
        inline: bool = False,
    ) -> None:
        self.world_id = ports.world_id
        self.code_version = ports.config.code_version  # its executor runs only these plans
        self.persistence = ports.persistence
        self.coordinator = ports.coordinator
        self.clock = ports.clock
        self.executor = executor
        self.cluster = cluster
        self.planner = planner
        self.delayed = delayed
        #: called with a plan halted outside an executor (see FinishedPlans)
        self.on_finished = on_finished
        #: an inline executor's world runs its sub-plans itself (see :meth:`hand_out`)
        self.inline = inline
        self._stopped = False

    def stop(self) -> None:
        """The world is terminating: refuse new work."""
        self._stopped = True

    def handing_over(self, plan: ExecutionPlan) -> bool:
        """True for a plan this terminating world paused (not for a failure): it goes to
        another executor under its request (see ``Cluster.hand_over``), so that request
        is answered from there, not with the paused plan."""
        return (
            self._stopped
            and self.executor is not None
            and (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.PENDING)
        )

    def pass_on(self, plan_id: str, client_world_id: str, request_id: str) -> bool:
        """An execution request from another world, refused here because this world is
        terminating, goes on to another executor world; False when there is none (or this
        world is not terminating)."""
        if not self._stopped or self.executor is None:
            return False
        return self.cluster.pass_on(plan_id, client_world_id, request_id)

    # -- where a plan is -------------------------------------------------------------

    def route(self, plan_id: str) -> Route:
        """Where requests about the plan go: here, to the lock's owner, or nowhere."""
        if self.executor is not None and self.executor.running(plan_id):
            return Here()
        owner = self.coordinator.execution_lock_owner(plan_id)
        if owner is None:
            return Nobody()
        if owner == self.world_id:
            return Here() if self.executor is not None else Nobody()
        return Owner(owner)

    def running(self, plan_id: str) -> bool:
        """True when this world's executor runs the plan now."""
        return self.executor is not None and self.executor.running(plan_id)

    # -- starting -----------------------------------------------------------------

    def trigger(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        attributes: PlanAttributes | None = None,
    ) -> tuple[str, Future[ExecutionPlan]]:
        """Plan and start: (plan id, future of the plan once it stops or pauses)."""
        self.require_alive()
        if self.executor is None:  # a client world: an executor world runs it
            # the lock, held until an executor takes it over, keeps starting executors
            # from picking the plan up as abandoned while it is on its way
            handoff = self.cluster.handoff()
            plan = self.planner.plan(
                action_class, args, kwargs, lock=True, request=handoff, attributes=attributes
            )
            if handoff is None:
                return plan.id, self.cluster.execute(plan.id, plan_needs(plan))
            assert handoff.future is not None
            return plan.id, handoff.future
        plan = self.planner.plan(action_class, args, kwargs, lock=True, attributes=attributes)
        return plan.id, self.executor.execute(plan)

    def execute(self, plan_id: str) -> Future[ExecutionPlan]:
        """Execute a planned plan, resume a paused one, or run a delayed one now."""
        if self._scheduled(plan_id):
            return self.delayed.run_now(plan_id)
        return self._execute(plan_id, (PlanState.PLANNED, PlanState.PAUSED))

    def resume(self, plan_id: str) -> Future[ExecutionPlan]:
        """Resume a paused plan: its failed steps run again."""
        return self._execute(plan_id, (PlanState.PAUSED,))

    def hand_out(self, plan_id: str) -> Future[ExecutionPlan]:
        """Execute a planned plan on some executor world serving its queues (round robin,
        this one included), as a client world's trigger does: the execution lock, taken
        here, moves to that executor. A world with an inline executor runs it itself:
        its direct connector would deliver the request on another thread."""
        if self.inline:
            return self.execute(plan_id)
        try:
            self.require_alive()
            plan = self.locked_plan(plan_id, (PlanState.PLANNED,))
        except DynflowError as exc:
            return futures.failed(exc)
        return self.cluster.execute(plan_id, plan_needs(plan))

    def _execute(self, plan_id: str, allowed: tuple[PlanState, ...]) -> Future[ExecutionPlan]:
        try:
            if self.executor is None:
                self.require_alive()
            plan = self.locked_plan(plan_id, allowed)
        except DynflowError as exc:
            return futures.failed(exc)
        if self.executor is None or not may_run(self.code_version, plan.code_version):
            return self.cluster.execute(plan_id)  # the lock goes with it to an executor
        if left_running(plan):  # paused after its executor died, before recovery
            return self.executor.recover(plan, last_executor(plan), True)
        return self.executor.execute(plan)

    def take_over(
        self,
        plan_id: str,
        client_world_id: str,
        request_id: str,
        accepted: str | None = None,
        reply: Reply | None = None,
    ) -> tuple[Future[ExecutionPlan], bool]:
        """An execution request from another world: run (or resume) the plan here; the
        execution lock records who asked. ``accepted`` (an answer's text) is written as
        the lock moves from the client, where the database can: (future, answered?).
        ``reply``: the answer the executor writes with the plan's last commit here."""
        requester = {"client_world_id": client_world_id, "request_id": request_id}
        try:
            executor = self.require_executor()
            answer = None if accepted is None else (client_world_id, accepted)
            taken = self.persistence.take_over_plan(
                plan_id, client_world_id, self.world_id, requester, answer
            )
        except DynflowError as exc:
            return futures.failed(exc), False
        return takeover.start_taken(self, executor, plan_id, requester, taken, reply)

    def locked_plan(
        self,
        plan_id: str,
        allowed: tuple[PlanState, ...],
        lock_data: dict[str, Any] | None = None,
        taken: tuple[bool, ExecutionPlan | None] = (False, None),
    ) -> ExecutionPlan:
        """Take the plan's execution lock, unless it was ``taken`` over already (then
        maybe with the plan read), and load the plan; it must be in an ``allowed`` state."""
        moved, plan = taken
        try:
            if not moved:
                self.coordinator.acquire(EXECUTION_LOCK, plan_id, lock_data)
        except LockTaken as exc:
            raise ExecutionError(
                f"execution plan {plan_id} is already running in world {exc.owner_id}"
            ) from None
        try:
            if plan is None:
                plan = self.persistence.load_execution_plan(plan_id)
            if plan.state not in allowed:
                raise ExecutionError(
                    f"execution plan {plan_id} is {plan.state}/{plan.result}: "
                    f"only a plan that is {' or '.join(allowed)} can be executed this way"
                )
        except BaseException:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
            raise
        return plan

    # -- stopping and steering -------------------------------------------------------

    def halt(self, plan_id: str, why: str | None = None) -> Future[ExecutionPlan]:
        """Stop a plan at once (a delayed plan: cancel it); ``why``: see ``HaltPlan``."""
        if self._scheduled(plan_id):
            return futures.settled(lambda: self.delayed.cancel(plan_id), DynflowError)
        match self.route(plan_id):
            case Here():
                assert self.executor is not None
                return self.executor.halt(plan_id, why)
            case Owner(world_id):
                request = self.cluster.request(world_id, HaltRequest(plan_id, why))
                return futures.then(
                    request, lambda _: self.persistence.load_execution_plan(plan_id)
                )
        allowed = (PlanState.PLANNED, PlanState.PAUSED, PlanState.PENDING)
        try:
            plan = self.locked_plan(plan_id, allowed)
        except DynflowError as exc:
            return futures.failed(exc)
        try:
            halted = offline.halt(
                self.persistence,
                self.world_id,
                plan,
                self.on_finished,
                registration=self.coordinator.registration(),
                why=why,
            )
        finally:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
        return futures.resolved(halted)

    def skip(self, plan_id: str, step_id: int) -> ExecutionPlan:
        """Mark a failed step of a paused plan skipped (and the steps needing it)."""
        plan = self.locked_plan(plan_id, (PlanState.PAUSED,))
        try:  # the core refuses a step that does not exist or did not fail
            offline.skip(
                self.persistence,
                self.world_id,
                plan,
                step_id,
                registration=self.coordinator.registration(),
            )
        finally:
            self.coordinator.release(EXECUTION_LOCK, plan_id)
        return self.persistence.load_execution_plan(plan_id)

    def event(
        self, plan_id: str, step_id: int, payload: Any = None, *, optional: bool = False
    ) -> Future[Any]:
        """Deliver ``payload`` to a suspended step, wherever its plan runs. While the plan
        is between executors (:class:`PlanInTransit`) the event is sent again, for up
        to ``EVENT_RETRY_FOR`` seconds, until an executor has the plan."""
        try:
            payload = to_json_value(payload, f"event for step {step_id}")
            check_size(payload, self.planner.max_value_bytes, f"event for step {step_id}")
        except (NotSerializable, ValueTooLarge) as exc:
            return futures.failed(exc)
        delivered: Future[Any] = Future()
        deadline = time.monotonic() + EVENT_RETRY_FOR
        self._send_event(plan_id, step_id, payload, optional, delivered, deadline, 0)
        return delivered

    def _send_event(
        self,
        plan_id: str,
        step_id: int,
        payload: Any,
        optional: bool,
        delivered: Future[Any],
        deadline: float,
        attempt: int,
    ) -> None:
        route = self.route(plan_id)
        sent = self._event_once(route, plan_id, step_id, payload, optional)

        def done(answer: Future[Any]) -> None:
            error = answer.exception()
            if error is None:
                futures.resolve(delivered, answer.result())
            elif not self._in_transit(error, route, plan_id):
                futures.reject(delivered, error)
            elif self._stopped:  # no retries from a terminating world: its sender retries
                futures.reject(delivered, _in_transit_error(plan_id, error))
            elif time.monotonic() < deadline:
                delay = min(EVENT_RETRY_INTERVAL * 2**attempt, 1.0)
                self.clock.schedule(
                    delay,
                    lambda: self._send_event(
                        plan_id, step_id, payload, optional, delivered, deadline, attempt + 1
                    ),
                )
            elif optional:
                futures.resolve(delivered, False)
            else:
                futures.reject(delivered, _in_transit_error(plan_id, error))

        sent.add_done_callback(done)

    def _event_once(
        self, route: Route, plan_id: str, step_id: int, payload: Any, optional: bool
    ) -> Future[Any]:
        match route:
            case Here():
                assert self.executor is not None
                if self._stopped and not self.executor.running(plan_id):
                    return futures.failed(self._leaving(plan_id))
                return self.executor.event(plan_id, step_id, payload, optional)
            case Owner(world_id):
                request = EventRequest(plan_id, step_id, payload, optional)
                return self.cluster.request(world_id, request)
        try:
            error: DynflowError = self._undeliverable(plan_id, step_id)
        except DynflowError as exc:  # no such plan or step
            error = exc
        if optional and not isinstance(error, PlanInTransit):
            return futures.resolved(False)
        return futures.failed(error)

    def _in_transit(self, error: BaseException, route: Route, plan_id: str) -> bool:
        """Whether an event failed because its plan is between executors: refused as such
        (here or remotely), refused by this terminating world, or its owner went away."""
        if isinstance(error, PlanInTransit) or (
            isinstance(error, RemoteError) and error.error_class == class_name(PlanInTransit)
        ):
            return True
        if isinstance(route, Here):
            return self._stopped  # this world's executor refused it while terminating
        if isinstance(route, Owner) and not isinstance(error, RemoteError):
            # not answered (the owner left): in transit if the plan has moved since
            return self.coordinator.execution_lock_owner(plan_id) != route.world_id
        return False

    def _leaving(self, plan_id: str) -> PlanInTransit:
        return PlanInTransit(
            f"execution plan {plan_id} is being handed over by terminating world "
            f"{self.world_id}: send the event again once another executor has it"
        )

    def _undeliverable(self, plan_id: str, step_id: int) -> ExecutionError:
        """Why an event cannot reach a step of a plan that no world runs."""
        plan = self.persistence.load_execution_plan(plan_id)
        step = _step(plan, step_id)
        if step.state is not StepState.SUSPENDED:
            return ExecutionError(
                f"step {step_id} of execution plan {plan_id} is {step.state}, "
                "not suspended: the event was not delivered"
            )
        if (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.PENDING):
            # paused by a terminating executor (or after one died): the next one takes it
            return PlanInTransit(
                f"execution plan {plan_id} is between executors (its executor terminated "
                "or died): the event was not delivered; send it again once an executor "
                "runs the plan (start one if none is running)"
            )
        return ExecutionError(
            f"execution plan {plan_id} is {plan.state} and not executed by "
            f"world {self.world_id}: the event was not delivered"
            + (": resume the plan first" if plan.state is PlanState.PAUSED else "")
        )

    def limits_freed(self) -> None:
        """Another world released limits: this world's waiting steps ask again."""
        if self.executor is not None:
            self.executor.limits_freed()

    def cancel(self, plan_id: str) -> list[Future[Any]]:
        """Cancel a plan's cancellable steps, wherever it runs (a delayed plan: at once)."""
        if self._scheduled(plan_id):
            return [futures.settled(lambda: self.delayed.cancel(plan_id), DynflowError)]
        route = self.route(plan_id)
        if isinstance(route, Owner):  # it cancels there, one future for all
            return [self.cluster.request(route.world_id, CancelRequest(plan_id))]
        executor = self.require_executor()
        if isinstance(route, Nobody):
            plan = self.persistence.load_execution_plan(plan_id)
            raise ExecutionError(
                f"execution plan {plan_id} is {plan.state}, not executed by world "
                f"{self.world_id}: only a running plan can be cancelled"
            )
        return executor.cancel(plan_id).result(timeout=30)

    def schedule_step_timeout(
        self, plan_id: str, step_id: int, sequence: int, seconds: float
    ) -> None:
        """Fail a step still suspended since hand-out ``sequence`` (it runs here)."""
        if self.executor is not None and not self._stopped:
            self.executor.timeout(plan_id, step_id, sequence, seconds)

    # -- helpers ---------------------------------------------------------------------

    def require_alive(self) -> None:
        if self._stopped:
            raise ExecutionError(f"world {self.world_id} is terminated")

    def require_executor(self) -> Executor:
        self.require_alive()
        if self.executor is None:
            raise ConfigurationError(
                f"world {self.world_id} has no executor (executor=False): run plans from a "
                "world with executor=True"
            )
        return self.executor

    def _scheduled(self, plan_id: str) -> bool:
        filters = {"id": plan_id, "state": PlanState.SCHEDULED}
        return self.persistence.find_execution_plan_counts(filters) > 0


def _in_transit_error(plan_id: str, error: BaseException) -> PlanInTransit:
    if isinstance(error, PlanInTransit):
        return error
    return PlanInTransit(
        f"execution plan {plan_id} is between executors ({error}): the event was not "
        "delivered; send it again once an executor runs the plan"
    )


def _step(plan: ExecutionPlan, step_id: int) -> Any:
    step = plan.steps.get(step_id)
    if step is None:
        raise NotFound(f"execution plan {plan.id} has no step {step_id}")
    return step
