"""The console's HTML pages and their forms."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dynflow.errors import DynflowError, NotFound
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.views import ActionOutcome, BulkOutcome
from dynflow.web.auth import SESSION_COOKIE, SESSION_MAX_AGE
from dynflow.web.console import BULK, DEFAULT_PER_PAGE, MAX_LABEL, SORTS, NotAvailable
from dynflow.web.plan_routes import render_plan
from dynflow.web.throttle import client_address

if TYPE_CHECKING:
    from dynflow.web.app import Web


PLAN_STATES = [str(s) for s in PlanState]
PLAN_RESULTS = [str(r) for r in PlanResult]
MAX_PAGE = 1_000_000


@dataclass
class ListParams:
    """The plans list's filters, sorting and page: all in the URL."""

    state: str = ""
    result: str = ""
    label: Annotated[str, Query(max_length=MAX_LABEL)] = ""
    action_class: Annotated[str, Query(max_length=MAX_LABEL)] = ""
    text: Annotated[str, Query(max_length=MAX_LABEL)] = ""
    started_after: Annotated[str, Query(max_length=40)] = ""
    started_before: Annotated[str, Query(max_length=40)] = ""
    key: Annotated[str, Query(max_length=MAX_LABEL)] = ""
    sort: str = "started_at"
    desc: bool = True
    refresh: bool = False
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Query(ge=1)] = DEFAULT_PER_PAGE


def _choice(name: str, value: str, allowed: list[str]) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise HTTPException(400, f"unknown {name} {value!r}: use one of {', '.join(allowed)}")
    return value


def _when(name: str, value: str) -> datetime | None:
    """A time from the filter form: empty is no filter; without a zone it is UTC (the
    browser's datetime-local field sends none)."""
    if not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(
            400, f"{name} {value!r} is not a time: use YYYY-MM-DDTHH:MM[:SS] (UTC)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
        address = client_address(request)
        web.throttle.check(address)
        token = (await request.form()).get("token")
        if not isinstance(token, str) or not web.auth.check_login(token):
            web.throttle.failed(address)
            return web.render(request, "login.html", 401, error="wrong token")
        web.throttle.succeeded(address)
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

    def list_page(
        request: Request, params: ListParams, status: int = 200, bulk: BulkOutcome | None = None
    ) -> Response:
        state_value = _choice("state", params.state, PLAN_STATES)
        result_value = _choice("result", params.result, PLAN_RESULTS)
        sort_value = _choice("sort", params.sort, list(SORTS)) or "started_at"
        after = _when("started after", params.started_after)
        before = _when("started before", params.started_before)
        listing = console.plans(
            state=None if state_value is None else PlanState(state_value),
            result=None if result_value is None else PlanResult(result_value),
            label=params.label or None,
            action_class=params.action_class or None,
            text=params.text or None,
            started_after=after,
            started_before=before,
            key=params.key or None,
            sort=sort_value,
            desc=params.desc,
            page=params.page,
            per_page=params.per_page,
        )
        filters = {
            "state": params.state,
            "result": params.result,
            "label": params.label,
            "action_class": params.action_class,
            "text": params.text,
            "started_after": after.isoformat() if after else "",
            "started_before": before.isoformat() if before else "",
            "key": params.key,
        }
        return web.render(
            request,
            "plans.html",
            status,
            listing=listing,
            filters=filters,
            states=PLAN_STATES,
            results=PLAN_RESULTS,
            sorts=SORTS,
            sort=sort_value,
            desc=params.desc,
            refresh=params.refresh,
            now=datetime.now(UTC),
            query=request.url.query,
            bulk=bulk,
            message=bulk.message if bulk else None,
            ok=bulk.ok if bulk else True,
        )

    @router.get("/", response_class=HTMLResponse)
    def plans(request: Request, params: Annotated[ListParams, Depends()]) -> Response:
        return list_page(request, params)

    @router.post("/plans/bulk", response_class=HTMLResponse)
    async def bulk(request: Request, params: Annotated[ListParams, Depends()]) -> Response:
        form = await request.form()
        command = form.get("command")
        plan_ids = [v for v in form.getlist("plan_id") if isinstance(v, str) and v]
        if command not in BULK:
            raise HTTPException(400, f"unknown command {command!r}: use one of {', '.join(BULK)}")
        if not plan_ids:
            outcome = BulkOutcome(ok=False, message="select at least one plan", items=[])
            return list_page(request, params, 400, outcome)
        outcome = await run_in_threadpool(console.bulk, str(command), plan_ids)
        return list_page(request, params, 200, outcome)

    @router.get("/overview", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        return web.render(request, "overview.html", overview=console.overview())

    def plan_page(request: Request, plan_id: str, act: Callable[[], ActionOutcome]) -> Response:
        try:
            outcome = act()
        except NotFound:
            raise
        except DynflowError as exc:
            outcome = ActionOutcome(ok=False, message=str(exc))
        return render_plan(
            web,
            request,
            plan_id,
            200 if outcome.ok else 409,
            message=outcome.message,
            ok=outcome.ok,
        )

    @router.post("/plans/{plan_id}/resume", response_class=HTMLResponse)
    def resume(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.resume(plan_id))

    @router.post("/plans/{plan_id}/cancel", response_class=HTMLResponse)
    def cancel(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.cancel(plan_id))

    @router.post("/plans/{plan_id}/halt", response_class=HTMLResponse)
    def halt(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.halt(plan_id))

    @router.post("/plans/{plan_id}/revert", response_class=HTMLResponse)
    def revert(request: Request, plan_id: str) -> Response:
        return plan_page(request, plan_id, lambda: console.revert(plan_id))

    @router.post("/plans/{plan_id}/execute", response_class=HTMLResponse)
    def approve(request: Request, plan_id: str) -> Response:
        who = web.auth.user(request)
        return plan_page(request, plan_id, lambda: console.approve(plan_id, who))

    @router.post("/plans/{plan_id}/reject", response_class=HTMLResponse)
    def reject(request: Request, plan_id: str) -> Response:
        who = web.auth.user(request)
        return plan_page(request, plan_id, lambda: console.reject(plan_id, who))

    @router.post("/plans/{plan_id}/steps/{step_id}/event", response_class=HTMLResponse)
    async def send_event(request: Request, plan_id: str, step_id: int) -> Response:
        text = (await request.form()).get("payload")
        text = text if isinstance(text, str) else ""
        try:
            payload = json.loads(text) if text.strip() else None
        except ValueError as exc:
            message = f'the event is not JSON ({exc}): e.g. {{"approved": true}}'
            return await run_in_threadpool(
                plan_page, request, plan_id, lambda: ActionOutcome(ok=False, message=message)
            )
        return await run_in_threadpool(
            plan_page, request, plan_id, lambda: console.event(plan_id, step_id, payload)
        )

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

    @router.get("/limits", response_class=HTMLResponse)
    def limits(request: Request) -> Response:
        return web.render(request, "limits.html", 200, limits=console.limits())

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
