"""Who may use the console, and the CSRF defence of its state-changing requests.

An ``auth`` is an :class:`Auth` (``BasicAuth``, ``TokenAuth``, ``NO_AUTH``) or any
callable ``(request) -> bool``. Requests a browser authenticates on its own (a
session cookie, Basic credentials, no auth at all) must prove on every POST that
they come from one of our pages: the CSRF token bound to the browser's CSRF cookie,
and a same-origin ``Origin``/``Referer`` when one is sent. A request carrying an
``Authorization: Bearer`` header that was accepted needs no token: no browser adds
that header to a cross-site request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

SESSION_COOKIE = "dynflow_session"
CSRF_COOKIE = "dynflow_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: how long a login-form session lasts
SESSION_MAX_AGE = 12 * 3600


class Auth:
    """The base of the console's authentication schemes."""

    #: True when the console offers a login form (``TokenAuth``)
    login_form = False
    #: the ``WWW-Authenticate`` challenge sent with a 401, if any
    challenge: str | None = None

    def authenticate(self, request: Request, sessions: Sessions) -> bool:
        raise NotImplementedError

    def check_login(self, secret: str) -> bool:
        return False

    def user(self, request: Request) -> str:
        """Who an authenticated request comes from, for the plan's history."""
        return "user"


class _NoAuth(Auth):
    """Everyone is let in: only for a console bound to 127.0.0.1."""

    def authenticate(self, request: Request, sessions: Sessions) -> bool:
        return True

    def user(self, request: Request) -> str:
        return "anonymous"

    def __repr__(self) -> str:
        return "NO_AUTH"


NO_AUTH: Auth = _NoAuth()


class BasicAuth(Auth):
    """HTTP Basic authentication with one user name and password."""

    challenge = 'Basic realm="dynflow", charset="UTF-8"'

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise ValueError("BasicAuth needs a non-empty username and password")
        self._expected = _digest(f"{username}:{password}")
        self._username = username

    def user(self, request: Request) -> str:
        return self._username

    def authenticate(self, request: Request, sessions: Sessions) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(_digest(given), self._expected)

    def __repr__(self) -> str:
        return "BasicAuth(...)"


class TokenAuth(Auth):
    """A shared token: ``Authorization: Bearer <token>``, or typed once into the login
    form, which then sets a signed session cookie."""

    login_form = True

    def __init__(self, token: str) -> None:
        if len(token) < 8:
            raise ValueError("TokenAuth needs a token of at least 8 characters")
        self._expected = _digest(token)

    def check_login(self, secret: str) -> bool:
        return hmac.compare_digest(_digest(secret), self._expected)

    def user(self, request: Request) -> str:
        return "token"

    def authenticate(self, request: Request, sessions: Sessions) -> bool:
        token = bearer_token(request)
        if token is not None:
            return self.check_login(token)
        return sessions.valid(request.cookies.get(SESSION_COOKIE))

    def __repr__(self) -> str:
        return "TokenAuth(...)"


class CallableAuth(Auth):
    """Any ``(request) -> bool``."""

    def __init__(self, check: Callable[[Request], bool]) -> None:
        self._check = check

    def authenticate(self, request: Request, sessions: Sessions) -> bool:
        return bool(self._check(request))


def as_auth(auth: Auth | Callable[[Request], bool]) -> Auth:
    if isinstance(auth, Auth):
        return auth
    if callable(auth):
        return CallableAuth(auth)
    raise TypeError(
        f"auth must be BasicAuth, TokenAuth, NO_AUTH or a callable (request) -> bool, not {auth!r}"
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


@dataclass(frozen=True)
class Sessions:
    """Signed session cookies and the CSRF tokens bound to each browser's CSRF cookie."""

    secret_key: str

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.secret_key, salt="dynflow-console-session")

    def new_session(self) -> str:
        return self._serializer.dumps({"session": secrets.token_urlsafe(16)})

    def valid(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        try:
            self._serializer.loads(cookie, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return False
        return True

    def csrf_token(self, csrf_cookie: str) -> str:
        mac = hmac.new(self.secret_key.encode(), csrf_cookie.encode(), hashlib.sha256)
        return mac.hexdigest()

    def csrf_valid(self, csrf_cookie: str | None, token: str | None) -> bool:
        if not csrf_cookie or not token:
            return False
        return hmac.compare_digest(self.csrf_token(csrf_cookie), token)


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request) -> bool:
    """False when the request says it comes from another origin (``Origin``, else
    ``Referer``); True when it says nothing."""
    ours = f"{request.url.scheme}://{request.url.netloc}".lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() == ours
    referer = request.headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == ours
    return True
