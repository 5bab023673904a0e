"""``create_app(world, auth=...)``: the console as one ASGI application.

Everything but the login form and the static files needs authentication; every
state-changing request is a POST guarded against cross-site requests (see
:mod:`dynflow.web.auth`); every response carries the security headers; errors
reach the client as a message, never as a stack trace.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from dynflow.action.base import Action
from dynflow.errors import ConfigurationError, DynflowError, NotFound
from dynflow.web.auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    NO_AUTH,
    Auth,
    Sessions,
    as_auth,
    bearer_token,
    new_csrf_cookie,
    same_origin,
)
from dynflow.web.console import Console, NotAvailable, PageTooDeep
from dynflow.web.hosts import LOOPBACK, HostCheck, allowed
from dynflow.web.inbound import DEFAULT_MAX_BODY, BodyLimit, Triggers
from dynflow.web.throttle import Throttle, TooManyAttempts, client_address

if TYPE_CHECKING:
    from dynflow.world import World

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: paths reachable without authentication
PUBLIC = ("/login", "/static/")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class NotAuthenticated(Exception):
    pass


class Forbidden(Exception):
    pass


def local_path(request: Request) -> str:
    """The request's path inside the console (without the prefix it is mounted under)."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def is_api(request: Request) -> bool:
    """For machines (JSON errors, 401 rather than the login form): the API, /metrics."""
    path = local_path(request)
    return path.startswith("/api/") or path == "/metrics"


class Web:
    """What the routes share: the console over the world, auth, sessions, templates."""

    def __init__(self, world: World, auth: Auth, secret_key: str, wait_seconds: float) -> None:
        self.console = Console(world, wait_seconds=wait_seconds)
        self.auth = auth
        self.sessions = Sessions(secret_key)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["pretty"] = _pretty
        self.templates.filters["ago"] = ago
        self.templates.filters["duration"] = duration
        #: the action classes HTTP clients may trigger
        self.triggers = Triggers(())
        #: failed authentications per client address
        self.throttle = Throttle()

    def csrf_token(self, request: Request) -> str:
        cookie = getattr(request.state, "csrf_cookie", None) or new_csrf_cookie()
        return self.sessions.csrf_token(cookie)

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        values: dict[str, Any] = {"message": None, "ok": True}
        values.update(context)
        html = self.templates.get_template(template).render(
            base=request.scope.get("root_path", ""),
            path=local_path(request),
            csrf_token=self.csrf_token(request),
            login_form=self.auth.login_form,
            **values,
        )
        return HTMLResponse(html, status_code=status_code)

    async def guard(self, request: Request) -> None:
        """Authentication (guesses slowed down per address), then the CSRF and
        same-origin checks of a POST."""
        address = client_address(request)
        presented = "authorization" in request.headers
        if presented:
            self.throttle.check(address)
        if not self.auth.authenticate(request, self.sessions):
            if presented:
                self.throttle.failed(address)
            raise NotAuthenticated()
        if presented:
            self.throttle.succeeded(address)
        if request.method not in SAFE_METHODS and bearer_token(request) is None:
            await self.check_csrf(request)

    async def check_csrf(self, request: Request) -> None:
        if not same_origin(request):
            raise Forbidden("cross-origin request refused")
        token = request.headers.get(CSRF_HEADER)
        content_type = request.headers.get("content-type", "")
        if token is None and content_type.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
        if not self.sessions.csrf_valid(request.cookies.get(CSRF_COOKIE), token):
            raise Forbidden("missing or wrong CSRF token: reload the page and try again")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was, for people: "12 s ago", "3 min ago", "2 h ago"."""
    if value is None:
        return "\u2013"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    later = seconds < 0
    text = duration(abs(seconds), coarse=True)
    return f"in {text}" if later else f"{text} ago"


def duration(seconds: float | None, coarse: bool = False) -> str:
    """A length of time for people: "0.42 s", "3 min 4 s", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return "\u2013"
    if seconds < 60:
        return f"{int(seconds)} s" if coarse else f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min" if coarse else f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" if coarse else f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d" if coarse else f"{days} d {hours} h"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def create_app(
    world: World,
    *,
    auth: Auth | Callable[[Request], bool],
    secret_key: str | None = None,
    wait_seconds: float = 2.0,
    triggerable: Iterable[type[Action]] = (),
    max_body: int = DEFAULT_MAX_BODY,
    allowed_hosts: Iterable[str] | None = None,
    metrics_auth: Auth | Callable[[Request], bool] | None = None,
) -> FastAPI:
    """The console over ``world``. ``auth``: ``BasicAuth``, ``TokenAuth``, ``NO_AUTH`` or a
    callable ``(request) -> bool``. ``secret_key`` signs session cookies and CSRF tokens
    (default: random, so sessions end when the process does). Commands wait up to
    ``wait_seconds`` for their effect before answering. ``triggerable``: the action
    classes ``POST /api/plans`` may trigger. Request bodies over ``max_body`` bytes
    are refused (413). ``allowed_hosts``: the host names (ports ignored; ``"*"``: any)
    the console answers to; others get 400. By default any host with authentication,
    and only ``localhost``, ``127.0.0.1`` and ``[::1]`` with ``NO_AUTH`` (against DNS
    rebinding). ``GET /metrics`` serves the world's Prometheus metrics (with
    ``World(metrics=True)``), behind ``auth`` unless ``metrics_auth`` is given."""
    from dynflow.web import api, metrics, pages, plan_routes, schedules, trigger_page

    if not isinstance(max_body, int) or max_body < 1:
        raise ConfigurationError(f"max_body must be a number of bytes >= 1, got {max_body!r}")
    checked_auth = as_auth(auth)
    if allowed_hosts is None and checked_auth is NO_AUTH:
        allowed_hosts = LOOPBACK
    web = Web(world, checked_auth, secret_key or secrets.token_urlsafe(32), wait_seconds)
    web.triggers = Triggers(triggerable)
    app = FastAPI(
        title="dynflow console",
        version="1",
        openapi_url=None,  # served below, behind authentication
        docs_url=None,
        redoc_url=None,
    )
    app.state.web = web
    guarded = [Depends(web.guard)]
    app.include_router(pages.public_router(web))
    app.include_router(pages.router(web), dependencies=guarded)
    app.include_router(plan_routes.router(web), dependencies=guarded)
    app.include_router(trigger_page.router(web), dependencies=guarded)
    app.include_router(schedules.pages(web), dependencies=guarded)
    app.include_router(api.router(web), prefix="/api", dependencies=guarded)
    app.include_router(schedules.api(web), prefix="/api", dependencies=guarded)
    app.include_router(
        metrics.router(web, world, None if metrics_auth is None else as_auth(metrics_auth))
    )

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_handlers(app, web)
    _install_middleware(app)
    app.add_middleware(BodyLimit, limit=max_body)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, hosts=allowed(allowed_hosts))
    return app


def _install_middleware(app: FastAPI) -> None:
    @app.middleware("http")
    async def security(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE)
        fresh = cookie is None or len(cookie) > 100
        request.state.csrf_cookie = new_csrf_cookie() if fresh else cookie
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                request.state.csrf_cookie,
                path=(request.scope.get("root_path") or "") + "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response


def _install_handlers(app: FastAPI, web: Web) -> None:
    def error(request: Request, status: int, message: str) -> Response:
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=status)
        return web.render(request, "error.html", status, status=status, error=message)

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if web.auth.login_form and not is_api(request) and request.method in SAFE_METHODS:
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/login", status_code=303)
        headers = {"WWW-Authenticate": web.auth.challenge} if web.auth.challenge else {}
        if is_api(request):
            return JSONResponse(
                {"detail": "authentication required"}, status_code=401, headers=headers
            )
        response = web.render(
            request, "error.html", 401, status=401, error="authentication required"
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(TooManyAttempts)
    async def too_many(request: Request, exc: TooManyAttempts) -> Response:
        response = error(request, 429, str(exc))
        response.headers["Retry-After"] = f"{exc.retry_after:.0f}"
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return error(request, 403, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error(request, 404, str(exc))

    @app.exception_handler(PageTooDeep)
    async def too_deep(request: Request, exc: PageTooDeep) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(NotAvailable)
    async def not_available(request: Request, exc: NotAvailable) -> Response:
        return error(request, 501, str(exc))

    @app.exception_handler(DynflowError)
    async def refused(request: Request, exc: DynflowError) -> Response:
        return error(request, 409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return error(request, 400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("console request %s %s failed", request.method, local_path(request), exc_info=exc)
        message = "internal error: see the server log"
        if is_api(request):
            return JSONResponse({"detail": message}, status_code=500)
        return HTMLResponse(f"<!doctype html><title>500</title><p>{message}</p>", 500)
