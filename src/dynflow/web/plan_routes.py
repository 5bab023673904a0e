"""The plan page's routes: the page itself (its tabs and side panel), the whole value of
one action's input or output, and the page's live event stream."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from dynflow.errors import NotFound
from dynflow.execution_plan.states import PlanState, StepState
from dynflow.services.versions import waiting_for
from dynflow.views import waiting_reason
from dynflow.web import plan_view, stream

if TYPE_CHECKING:
    from dynflow.web.app import Web

STEP_STATES = tuple(str(s) for s in StepState)
PLAN_STATES = tuple(str(s) for s in PlanState)
MAX_PAGE = 1_000_000


def render_plan(
    web: Web,
    request: Request,
    plan_id: str,
    status: int = 200,
    *,
    message: str | None = None,
    ok: bool = True,
    tab: str = "graph",
    step: int | None = None,
    page: int = 1,
    state: str = "",
    expand: list[str] | None = None,
) -> HTMLResponse:
    """The plan page (after a command: with its outcome ``message``)."""
    persistence = web.console.world.persistence
    plan = persistence.load_execution_plan(plan_id)
    base = request.scope.get("root_path", "")
    here = f"{base}/plans/{plan.id}"
    view = plan_view.build(
        plan, here, tab=tab, step_id=step, page=page, state=state, expand=expand or ()
    )
    if view.tab == "sub-plans":
        view.content.update(_sub_plans(web, plan.id, state, page))
    waits: dict[int, list[str]] = {}
    if any(str(s.state) == "waiting" for s in plan.steps.values()):
        for entry in persistence.find_limits(execution_plan_id=plan.id):
            if entry.state == "waiting":
                waits.setdefault(entry.step_id, []).append(entry.key)
    after, waited_by = web.console.world.delayed.after(plan.id)
    worlds = web.console.world.coordinator.find_worlds() if plan.code_version else []
    version_wait = waiting_for(plan, worlds)
    reasons = {
        sid: reason
        for sid, s in plan.steps.items()
        if (reason := waiting_reason(s, waits.get(sid, []))) is not None
    }
    return web.render(
        request,
        "plan.html",
        status,
        plan=plan,
        view=view,
        tabs=plan_view.TABS,
        step_states=STEP_STATES,
        plan_states=PLAN_STATES,
        state_filter=state,
        waiting_reasons=reasons,
        version_wait=version_wait,
        after=after,
        waited_by=waited_by,
        message=message,
        ok=ok,
    )


def _sub_plans(web: Web, plan_id: str, state: str, page: int) -> dict[str, Any]:
    persistence = web.console.world.persistence
    filters: dict[str, Any] = {"caller_execution_plan_id": plan_id}
    counts = {
        str(s): n for s, n in persistence.find_execution_plan_counts_by_state(filters).items()
    }
    total_all = sum(counts.values())
    if state:
        filters["state"] = state
    total = counts.get(state, 0) if state else total_all
    pages = max(1, math.ceil(total / plan_view.SUB_PLANS_PER_PAGE))
    page = min(max(page, 1), pages)
    found = persistence.find_execution_plans(
        filters,
        order_by="started_at",
        desc=False,
        page=page - 1,
        per_page=plan_view.SUB_PLANS_PER_PAGE,
    )
    return {
        "sub_counts": [(s, counts[s]) for s in PLAN_STATES if counts.get(s)],
        "sub_total": total_all,
        "sub_plans": plan_view.Page([plan_view.sub_plan(p) for p in found], total, page, pages),
    }


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    persistence = web.console.world.persistence

    @router.get("/plans/{plan_id}", response_class=HTMLResponse)
    def plan(
        request: Request,
        plan_id: str,
        tab: Annotated[str, Query(max_length=20)] = "graph",
        step: int | None = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        state: Annotated[str, Query(max_length=20)] = "",
        expand: Annotated[list[str] | None, Query(max_length=20)] = None,
    ) -> Response:
        if tab not in plan_view.TAB_NAMES:
            raise HTTPException(
                400, f"unknown tab {tab!r}: use one of {', '.join(plan_view.TAB_NAMES)}"
            )
        allowed = PLAN_STATES if tab == "sub-plans" else STEP_STATES
        if state and state not in allowed:
            raise HTTPException(400, f"unknown state {state!r}: use one of {', '.join(allowed)}")
        return render_plan(
            web,
            request,
            plan_id,
            tab=tab,
            step=step,
            page=page,
            state=state,
            expand=(expand or [])[:50],
        )

    @router.get("/plans/{plan_id}/timeline", response_class=HTMLResponse)
    def timeline(
        request: Request, plan_id: str, page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1
    ) -> Response:
        """The Timeline tab's content alone (the page redraws it with this as steps
        change)."""
        plan = persistence.load_execution_plan(plan_id)
        here = f"{request.scope.get('root_path', '')}/plans/{plan.id}"
        view = plan_view.build(plan, here, tab="timeline", page=page)
        return web.render(request, "plan_timeline.html", view=view)

    @router.get("/plans/{plan_id}/actions/{action_id}/{which}")
    def value(plan_id: str, action_id: int, which: Literal["input", "output"]) -> Response:
        """The whole input or output of one action, as JSON (the page shows it cut)."""
        found = persistence.load_execution_plan(plan_id)
        try:
            action = found.action(action_id)
        except KeyError:
            raise HTTPException(
                404, f"execution plan {plan_id} has no action {action_id}"
            ) from None
        chosen = action.input if which == "input" else action.output
        return Response(
            json.dumps(chosen, default=str, ensure_ascii=False), media_type="application/json"
        )

    watcher = stream.Watcher(persistence.load_plan_steps)

    @router.get("/plans/{plan_id}/events")
    def events(plan_id: str) -> Response:
        first = watcher.first(plan_id)
        if first is None:  # 404 before the stream starts
            raise NotFound(f"execution plan {plan_id} not found")
        return StreamingResponse(
            watcher.events(plan_id, first),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    return router
