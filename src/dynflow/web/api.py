"""The JSON API under ``/api/``: the pages' data and commands, for scripts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request

from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.views import (
    ActionOutcome,
    DelayedView,
    LimitView,
    PlanDetail,
    PlanList,
    WorldView,
)
from dynflow.web import inbound
from dynflow.web.console import DEFAULT_PER_PAGE, MAX_LABEL
from dynflow.web.inbound import Accepted, TriggerRequest

if TYPE_CHECKING:
    from dynflow.web.app import Web

ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "invalid parameters"},
    401: {"description": "authentication required"},
    403: {"description": "cross-site request refused (CSRF token or origin)"},
    404: {"description": "no such plan, step or world"},
}
COMMAND_ERRORS: dict[int | str, dict[str, str]] = {
    **ERRORS,
    409: {"description": "the plan is not in a state that allows this"},
}


Sort = Literal["started_at", "ended_at", "label", "state", "result", "duration"]


def router(web: Web) -> APIRouter:
    router = APIRouter(tags=["console"])
    console = web.console

    @router.get("/plans", response_model=PlanList, responses=ERRORS)
    def list_plans(
        state: PlanState | None = None,
        result: PlanResult | None = None,
        label: Annotated[str | None, Query(max_length=MAX_LABEL)] = None,
        action_class: Annotated[
            str | None, Query(max_length=MAX_LABEL, description="the entry action's class")
        ] = None,
        text: Annotated[
            str | None, Query(max_length=MAX_LABEL, description="part of the label, any case")
        ] = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        key: Annotated[
            str | None,
            Query(max_length=255, description="the idempotency key it was triggered with"),
        ] = None,
        sort: Annotated[Sort, Query(description="column to sort by")] = "started_at",
        desc: bool = True,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[
            int, Query(ge=1, description="plans per page, at most 100 (larger values get 100)")
        ] = DEFAULT_PER_PAGE,
    ) -> PlanList:
        """Plans (by default the latest started first), with the number in each state.
        Counting stops at 10,000 (``capped`` names the states whose count is a lower
        bound, ``total_capped`` says the total is one); pages go through the first
        10,000 plans of a
        list (deeper: 400, narrow the filters). ``sort``: ``duration`` is the time the
        plan ran (0 until it stops or pauses); ties are broken by id."""
        return console.plans(
            state=state,
            result=result,
            label=label,
            action_class=action_class,
            text=text,
            started_after=started_after,
            started_before=started_before,
            key=key,
            sort=sort,
            desc=desc,
            page=page,
            per_page=per_page,
        )

    @router.post(
        "/plans",
        status_code=202,
        response_model=Accepted,
        responses={**COMMAND_ERRORS, 413: {"description": "request body too large"}},
    )
    def trigger_plan(request: TriggerRequest) -> Accepted:
        """Trigger a plan of one of the classes given to ``create_app(triggerable=...)``
        (others: 404); 202 with its id. A planning failure is 409. Options: ``key`` (a
        key already taken answers with the plan that has it), ``after`` (plan ids; an
        unknown one: 404), ``priority``, ``deadline`` (seconds > 0), ``labels``; an
        invalid one: 400."""
        return inbound.trigger(console.world, web.triggers, request)

    @router.post(
        "/plans/{plan_id}/steps/{step_id}/event",
        status_code=202,
        response_model=Accepted,
        responses={**COMMAND_ERRORS, 413: {"description": "request body too large"}},
    )
    def send_event(
        plan_id: str, step_id: int, payload: Annotated[Any, Body(description="any JSON")] = None
    ) -> Accepted:
        """Deliver the JSON body to a suspended step as ``run(event=payload)``; 202, with
        whether it arrived within the console's wait."""
        return inbound.event(console.world, plan_id, step_id, payload, console.wait_seconds)

    @router.get("/plans/{plan_id}", response_model=PlanDetail, responses=ERRORS)
    def get_plan(plan_id: str) -> PlanDetail:
        """One plan: its steps, run flow, execution history and sub-plans."""
        return console.plan(plan_id)

    @router.post("/plans/{plan_id}/resume", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def resume_plan(plan_id: str) -> ActionOutcome:
        """Resume a paused plan (its failed steps run again)."""
        return console.resume(plan_id)

    @router.post("/plans/{plan_id}/execute", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def execute_plan(request: Request, plan_id: str) -> ActionOutcome:
        """Approve a planned plan (made with ``world.plan``) and execute it; "approved by
        <user>" goes into its history first. A plan that is not planned: 409."""
        return console.approve(plan_id, web.auth.user(request))

    @router.post("/plans/{plan_id}/reject", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def reject_plan(request: Request, plan_id: str) -> ActionOutcome:
        """Reject a planned plan: "rejected by <user>" goes into its history, then it is
        halted (stopped/error). A plan that is not planned: 409."""
        return console.reject(plan_id, web.auth.user(request))

    @router.post("/plans/{plan_id}/cancel", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def cancel_plan(plan_id: str) -> ActionOutcome:
        """Cancel a running plan's cancellable steps, or a delayed plan."""
        return console.cancel(plan_id)

    @router.post("/plans/{plan_id}/halt", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def halt_plan(plan_id: str) -> ActionOutcome:
        """Stop a plan at once: stopped/error."""
        return console.halt(plan_id)

    @router.post("/plans/{plan_id}/revert", response_model=ActionOutcome, responses=COMMAND_ERRORS)
    def revert_plan(plan_id: str) -> ActionOutcome:
        """Revert a paused or stopped plan: the revert of each action whose run succeeded,
        newest first; it ends stopped/reverted (paused/error when a revert fails)."""
        return console.revert(plan_id)

    @router.post(
        "/plans/{plan_id}/steps/{step_id}/skip",
        response_model=ActionOutcome,
        responses=COMMAND_ERRORS,
    )
    def skip_step(plan_id: str, step_id: int) -> ActionOutcome:
        """Skip a failed step of a paused plan; resume the plan afterwards."""
        return console.skip(plan_id, step_id)

    @router.get("/worlds", response_model=list[WorldView], responses=ERRORS)
    def list_worlds() -> list[WorldView]:
        """The registered worlds and the plans each holds."""
        return console.worlds()

    @router.post("/worlds/{world_id}/check", response_model=ActionOutcome, responses=ERRORS)
    def check_world(world_id: str) -> ActionOutcome:
        """Ping a world: ok is whether it answered in time."""
        return console.check_world(world_id)

    @router.post(
        "/worlds/{world_id}/invalidate",
        response_model=ActionOutcome,
        responses={**COMMAND_ERRORS, 501: {"description": "not available"}},
    )
    def invalidate_world(world_id: str) -> ActionOutcome:
        """Declare a world dead: its locks are released and its plans handed over."""
        return console.invalidate_world(world_id)

    @router.get("/delayed", response_model=list[DelayedView], responses=ERRORS)
    def list_delayed() -> list[DelayedView]:
        """The delayed plans waiting for their time, the soonest first."""
        return console.delayed()

    @router.get("/limits", response_model=list[LimitView], responses=ERRORS)
    def list_limits() -> list[LimitView]:
        """Holders and waiters of every limit key: holders first, then waiters in line."""
        return console.limits()

    return router
