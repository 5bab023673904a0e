"""The console's HTML pages and their forms."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dynflow.errors import DynflowError, NotFound
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.views import ActionOutcome
from dynflow.web.auth import SESSION_COOKIE, SESSION_MAX_AGE
from dynflow.web.console import DEFAULT_PER_PAGE, MAX_LABEL, SORTS, NotAvailable

if TYPE_CHECKING:
    from dynflow.web.app import Web

PLAN_STATES = [str(s) for s in PlanState]
PLAN_RESULTS = [str(r) for r in PlanResult]
MAX_PAGE = 1_000_000


def _choice(name: str, value: str, allowed: list[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(400, f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
    return value


def _cookie_path(request: Request) -> str:
    return (request.scope.get("root_path") or "") + "/"


def public_router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        if not web.auth.login_form:
            raise HTTPException(404, "this console has no login form")
        return web.render(request, "login.html", error=None)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if not web.auth.login_form:
            raise HTTPException(404, "this console has no login form")
        await web.check_csrf(request)
        token = (await request.form()).get("token")
        if not isinstance(token, str) or not web.auth.check_login(token):
            return web.render(request, "login.html", 401, error="wrong token")
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            web.sessions.new_session(),
            max_age=SESSION_MAX_AGE,
            path=_cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    return router


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    console = web.console

    @router.post("/logout")
    def logout(request: Request) -> Response:
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/login" if web.auth.login_form else "/", 303)
        response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
        return response

    @router.get("/", response_class=HTMLResponse)
    def plans(
        request: Request,
        state: str = "",
        result: str = "",
        label: Annotated[str, Query(max_length=MAX_LABEL)] = "",
        action_class: Annotated[str, Query(max_length=MAX_LABEL)] = "",
        text: Annotated[str, Query(max_length=MAX_LABEL)] = "",
        started_after: Annotated[datetime | None, Query()] = None,
        started_before: Annotated[datetime | None, Query()] = None,
        key: Annotated[str, Query(max_length=MAX_LABEL)] = "",
        sort: str = "started_at",
        desc: bool = True,
        refresh: bool = False,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
        per_page: Annotated[int, Query(ge=1)] = DEFAULT_PER_PAGE,
    ) -> Response:
        state_value = _choice("state", state, PLAN_STATES)
        result_value = _choice("result", result, PLAN_RESULTS)
        sort_value = _choice("sort", sort, list(SORTS)) or "started_at"
        listing = console.plans(
            state=None if state_value is None else PlanState(state_value),
            result=None if result_value is None else PlanResult(result_value),
            label=label or None,
            action_class=action_class or None,
            text=text or None,
            started_after=started_after,
            started_before=started_before,
            key=key or None,
            sort=sort_value,
            desc=desc,
            page=page,
            per_page=per_page,
        )
        filters = {
            "state": state,
            "result": result,
            "label": label,
            "action_class": action_class,
            "text": text,
            "started_after": started_after.isoformat() if started_after else "",
            "started_before": started_before.isoformat() if started_before else "",
            "key": key,
        }
        return web.render(
            request,
            "plans.html",
            listing=listing,
            filters=filters,
            states=PLAN_STATES,
            results=PLAN_RESULTS,
            sorts=SORTS,
            sort=sort_value,
            desc=desc,
            refresh=refresh,
        )

    def plan_page(request: Request, plan_id: str, act: Callable[[], ActionOutcome]) -> Response:
        try:
            outcome = act()
        except NotFound:
            raise
        except DynflowError as exc:
            outcome = ActionOutcome(ok=False, message=str(exc))
        return web.render(
            request,
            "plan.html",
            200 if outcome.ok else 409,
            plan=console.plan(plan_id),
            message=outcome.message,
            ok=outcome.ok,
        )

    @router.get("/plans/{plan_id}", response_class=HTMLResponse)
    def plan(request: Request, plan_id: str) -> Response:
        return web.render(request, "plan.html", plan=console.plan(plan_id))

    @router.post("/plans/{plan_id}/resume", response_class=HTMLResponse)
    def resume(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.resume(plan_id))

    @router.post("/plans/{plan_id}/cancel", response_class=HTMLResponse)
    def cancel(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.cancel(plan_id))

    @router.post("/plans/{plan_id}/halt", response_class=HTMLResponse)
    def halt(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.halt(plan_id))

    @router.post("/plans/{plan_id}/steps/{step_id}/skip", response_class=HTMLResponse)
    def skip(request: Request, plan_id: str, step_id: int) -> Response:
        return plan_page(request, plan_id, lambda: console.skip(plan_id, step_id))

    def worlds_page(request: Request, outcome: ActionOutcome | None, status: int) -> Response:
        return web.render(
            request,
            "worlds.html",
            status,
            worlds=console.worlds(),
            message=outcome.message if outcome else None,
            ok=outcome.ok if outcome else True,
        )

    @router.get("/worlds", response_class=HTMLResponse)
    def worlds(request: Request) -> Response:
        return worlds_page(request, None, 200)

    @router.post("/worlds/{world_id}/check", response_class=HTMLResponse)
    def check(request: Request, world_id: str) -> Response:
        outcome = console.check_world(world_id)
        return worlds_page(request, outcome, 200)

    @router.post("/worlds/{world_id}/invalidate", response_class=HTMLResponse)
    def invalidate(request: Request, world_id: str) -> Response:
        try:
            outcome = console.invalidate_world(world_id)
        except NotAvailable as exc:
            return worlds_page(request, ActionOutcome(ok=False, message=str(exc)), 501)
        except NotFound:
            raise
        except DynflowError as exc:
            return worlds_page(request, ActionOutcome(ok=False, message=str(exc)), 409)
        return worlds_page(request, outcome, 200)

    def delayed_page(request: Request, outcome: ActionOutcome | None, status: int) -> Response:
        return web.render(
            request,
            "delayed.html",
            status,
            delayed=console.delayed(),
            message=outcome.message if outcome else None,
            ok=outcome.ok if outcome else True,
        )

    def delayed_act(request: Request, act: Callable[[], ActionOutcome]) -> Response:
        try:
            outcome = act()
        except NotFound:
            raise
        except DynflowError as exc:
            return delayed_page(request, ActionOutcome(ok=False, message=str(exc)), 409)
        return delayed_page(request, outcome, 200)

    @router.get("/delayed", response_class=HTMLResponse)
    def delayed(request: Request) -> Response:
        return delayed_page(request, None, 200)

    @router.post("/delayed/{plan_id}/cancel", response_class=HTMLResponse)
    def delayed_cancel(request: Request, plan_id: str) -> Response:
        return delayed_act(request, lambda: console.cancel(plan_id))

    @router.post("/delayed/{plan_id}/run", response_class=HTMLResponse)
    def delayed_run(request: Request, plan_id: str) -> Response:
        return delayed_act(request, lambda: console.run_now(plan_id))

    return router
