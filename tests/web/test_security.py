"""The console's defences: authentication, CSRF and origin checks, escaping, bounded
filters, security headers, no stack traces."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from dynflow import PlanState, World
from dynflow.web import NO_AUTH, BasicAuth, TokenAuth
from tests.web.actions import FAILING, XSS, XSS_IMG, XSS_SVG, Hostile
from tests.web.conftest import ORIGIN, MakeClient, csrf_token, paused_plan

TOKEN = "s3cret-token-value"


def basic(user: str, password: str) -> dict[str, str]:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


# -- authentication ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/worlds", "/delayed", "/plans/x", "/plans/x/timeline", "/api/plans"]
)
def test_basic_auth_refuses_requests_without_valid_credentials(
    console_world: World, make_client: MakeClient, path: str
) -> None:
    client = make_client(console_world, BasicAuth("admin", "pw"))
    for headers in ({}, basic("admin", "wrong"), {"Authorization": "Basic !!!"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", headers=basic("admin", "pw")).status_code == 200


def test_openapi_document_needs_authentication_too(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, TokenAuth(TOKEN))
    assert client.get("/api/openapi.json").status_code == 401
    served = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert served.status_code == 200


def test_token_auth_accepts_the_bearer_token_and_sends_browsers_to_the_login_form(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, TokenAuth(TOKEN))
    page = client.get("/")
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    assert client.get("/api/plans").status_code == 401
    assert client.get("/api/plans", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/api/plans", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_login_form_sets_a_session_cookie_that_logout_clears(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, TokenAuth(TOKEN))
    token = csrf_token(client, "/login")
    wrong = client.post("/login", data={"token": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    assert "wrong token" in wrong.text
    assert client.get("/").status_code == 303

    logged_in = client.post("/login", data={"token": TOKEN, "csrf_token": token})
    assert logged_in.status_code == 303
    assert "httponly" in logged_in.headers["set-cookie"].lower()
    assert client.get("/").status_code == 200
    assert client.get("/api/plans").status_code == 200

    assert client.post("/logout", data={"csrf_token": csrf_token(client)}).status_code == 303
    assert client.get("/").status_code == 303


def test_login_without_csrf_token_is_refused(console_world: World, make_client: MakeClient) -> None:
    client = make_client(console_world, TokenAuth(TOKEN))
    assert client.post("/login", data={"token": TOKEN}).status_code == 403
    assert client.get("/").status_code == 303


def test_a_forged_session_cookie_is_refused(console_world: World, make_client: MakeClient) -> None:
    client = make_client(console_world, TokenAuth(TOKEN), secret_key="one")
    other = make_client(console_world, TokenAuth(TOKEN), secret_key="two")
    other.post("/login", data={"token": TOKEN, "csrf_token": csrf_token(other, "/login")})
    client.cookies.set("dynflow_session", other.cookies["dynflow_session"])
    assert client.get("/").status_code == 303


def test_a_callable_decides_who_gets_in(console_world: World, make_client: MakeClient) -> None:
    def allow(request: Request) -> bool:
        return request.headers.get("x-user") == "ops"

    client = make_client(console_world, allow)
    assert client.get("/worlds").status_code == 401
    assert client.get("/worlds", headers={"x-user": "ops"}).status_code == 200


def test_auth_must_be_given_and_valid(console_world: World) -> None:
    from dynflow.web import create_app

    with pytest.raises(TypeError, match="auth must be"):
        create_app(console_world, auth="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 8"):
        TokenAuth("short")
    with pytest.raises(ValueError, match="non-empty"):
        BasicAuth("", "")


# -- CSRF and origin -------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    console_world: World, make_client: MakeClient
) -> None:
    key = uuid.uuid4().hex
    plan = paused_plan(console_world, key)
    FAILING.discard(key)
    client = make_client(console_world, BasicAuth("admin", "pw"))
    auth = basic("admin", "pw")
    csrf_token(client, headers=auth)  # the browser has its CSRF cookie
    for path in (
        f"/plans/{plan.id}/resume",
        f"/plans/{plan.id}/halt",
        f"/api/plans/{plan.id}/resume",
        f"/api/plans/{plan.id}/halt",
    ):
        assert client.post(path, headers=auth).status_code == 403
        wrong = client.post(path, headers=auth, data={"csrf_token": "0" * 64})
        assert wrong.status_code == 403
        assert client.post(path, headers={**auth, "X-CSRF-Token": "x"}).status_code == 403
    reloaded = console_world.persistence.load_execution_plan(plan.id)
    assert (reloaded.state, reloaded.result) == (PlanState.PAUSED, plan.result)


def test_a_token_from_another_browser_is_refused(
    console_world: World, make_client: MakeClient
) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    victim = make_client(console_world)
    attacker = make_client(console_world)
    stolen = csrf_token(attacker)
    csrf_token(victim)
    assert victim.post(f"/plans/{plan.id}/halt", data={"csrf_token": stolen}).status_code == 403
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.PAUSED


def test_post_from_another_origin_is_refused_even_with_the_token(
    console_world: World, make_client: MakeClient
) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    client = make_client(console_world)
    token = csrf_token(client)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ):
        refused = client.post(f"/plans/{plan.id}/halt", data={"csrf_token": token}, headers=headers)
        assert refused.status_code == 403
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.PAUSED
    allowed = client.post(
        f"/plans/{plan.id}/halt",
        data={"csrf_token": token},
        headers={"Origin": ORIGIN, "Referer": f"{ORIGIN}/plans/{plan.id}"},
    )
    assert allowed.status_code == 200
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.STOPPED


def test_bearer_requests_need_no_csrf_token(console_world: World, make_client: MakeClient) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    client = make_client(console_world, TokenAuth(TOKEN))
    halted = client.post(f"/api/plans/{plan.id}/halt", headers={"Authorization": f"Bearer {TOKEN}"})
    assert halted.status_code == 200, halted.text
    assert halted.json()["plan"]["state"] == "stopped"


def test_every_page_carries_the_csrf_token_in_its_meta_and_forms(
    console_world: World, client: TestClient
) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    console_world.delay(Hostile, datetime.now(UTC) + timedelta(hours=1), "later")
    for path in ("/", f"/plans/{plan.id}", "/worlds", "/delayed"):
        page = client.get(path).text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
        assert token is not None, path
        forms = re.findall(r"<form method=\"post\".*?</form>", page, re.S)
        assert forms or path == "/", path  # the plans list has only its GET filter form
        for form in forms:
            assert f'name="csrf_token" value="{token.group(1)}"' in form


# -- escaping --------------------------------------------------------------------------


def test_markup_in_labels_input_output_and_errors_is_escaped_on_every_page(
    console_world: World, client: TestClient
) -> None:
    plan = console_world.trigger(Hostile, XSS).finished.result(timeout=10)
    assert plan.state is PlanState.PAUSED
    console_world.delay(Hostile, datetime.now(UTC) + timedelta(hours=1), XSS)
    pages = {
        "/": client.get("/"),
        "/plans": client.get(f"/plans/{plan.id}"),
        "/delayed": client.get("/delayed"),
        "/worlds": client.get("/worlds"),
        "/filtered": client.get("/", params={"label": XSS}),
        "/missing": client.get(f"/plans/{XSS}"),
    }
    run_step = next(s.id for s in plan.steps.values() if str(s.phase) == "run")
    for tab in ("timeline", "steps", "actions", "history", "sub-plans"):
        pages[f"/plans?tab={tab}"] = client.get(f"/plans/{plan.id}", params={"tab": tab})
    pages["/plans?step"] = client.get(f"/plans/{plan.id}", params={"step": run_step})
    pages["/plans/timeline"] = client.get(f"/plans/{plan.id}/timeline")
    assert f'data-step="{run_step}"' in pages["/plans/timeline"].text
    # the page's own drawings, the only SVG elements allowed
    own_svg = ('<svg class="graph" ', '<svg class="timeline" ', '<svg class="sub-counts" ')
    for name, page in pages.items():
        text = page.text.replace("<script src=", "")
        for drawing in own_svg:
            text = text.replace(drawing, "")
        for payload in (XSS, XSS_IMG, XSS_SVG, "<script", "<img", "<svg"):
            assert payload not in text, (name, payload)
    detail = pages["/plans"].text + pages["/plans?tab=actions"].text
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in pages["/plans?step"].text
    assert "&lt;img src=x onerror=" in pages["/plans?step"].text
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in detail
    assert "&lt;svg onload=alert(2)&gt;" in detail
    assert "&lt;img src=x onerror=" in detail
    assert "&lt;script&gt;" in pages["/"].text
    assert "&lt;script&gt;" in pages["/delayed"].text


def test_markup_in_the_json_api_is_data_not_html(console_world: World, client: TestClient) -> None:
    plan = console_world.trigger(Hostile, XSS).finished.result(timeout=10)
    response = client.get(f"/api/plans/{plan.id}")
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["label"] == XSS
    assert body["steps"][-1]["output"]["html"] == XSS_IMG


# -- bounded queries, headers, errors --------------------------------------------------


def test_absurd_per_page_is_bounded_to_100(console_world: World, client: TestClient) -> None:
    for per_page in ("1000", str(10**30)):
        listing = client.get("/api/plans", params={"per_page": per_page})
        assert listing.status_code == 200
        assert listing.json()["per_page"] == 100
        assert client.get("/", params={"per_page": per_page}).status_code == 200
    for bad in ("0", "-5", "many"):
        assert client.get("/api/plans", params={"per_page": bad}).status_code == 400
        assert client.get("/", params={"per_page": bad}).status_code == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("state", "running' OR '1'='1"),
        ("state", "bogus"),
        ("result", "success; DROP TABLE dynflow_execution_plans"),
        ("page", "0"),
        ("page", "1 OR 1=1"),
        ("label", "x" * 300),
    ],
)
def test_unknown_or_sql_looking_filters_are_refused(
    console_world: World, client: TestClient, name: str, value: str
) -> None:
    for path in ("/", "/api/plans"):
        response = client.get(path, params={name: value})
        assert response.status_code == 400, (path, response.text)
        assert "Traceback" not in response.text


def test_sql_looking_labels_are_harmless(console_world: World, client: TestClient) -> None:
    plan = paused_plan(console_world, uuid.uuid4().hex)
    for label in ("' OR '1'='1", "%", "x'; DELETE FROM dynflow_execution_plans; --"):
        listing = client.get("/api/plans", params={"label": label})
        assert listing.status_code == 200
        assert listing.json()["items"] == []
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.PAUSED


def test_responses_carry_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/api/plans", "/plans/missing", "/api/openapi.json"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_failures_show_a_message_and_never_a_stack_trace(
    console_world: World, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(console_world)
    client_no_raise = TestClient(client.app, base_url=ORIGIN, raise_server_exceptions=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/app.py line 42")

    monkeypatch.setattr(console_world.persistence, "find_execution_plans", broken)
    for path in ("/", "/api/plans"):
        response = client_no_raise.get(path)
        assert response.status_code == 500
        assert "internal error" in response.text
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
    client_no_raise.close()


def test_no_auth_is_for_local_use_only_but_still_checks_csrf(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, NO_AUTH)
    assert client.get("/").status_code == 200
    assert client.post(f"/api/worlds/{console_world.id}/check").status_code == 403


# -- DNS rebinding -------------------------------------------------------------------


def test_without_auth_only_loopback_hosts_are_served(
    console_world: World, make_client: MakeClient
) -> None:
    """A page on a domain resolving to 127.0.0.1 cannot read the console or take its
    CSRF token, nor post a skip/resume/cancel with it."""
    client = make_client(console_world)
    plan = paused_plan(console_world, uuid.uuid4().hex)
    for host in ("localhost", "localhost:8642", "127.0.0.1:8642", "[::1]:8642", "[::1]"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    token = csrf_token(client)
    for host in ("attacker.example", "attacker.example:8642", "127.0.0.1.nip.io"):
        page = client.get(f"/plans/{plan.id}", headers={"Host": host})
        assert page.status_code == 400, host
        assert "allowed_hosts" in page.text
        assert "csrf-token" not in page.text
        skip = client.post(
            f"/plans/{plan.id}/steps/2/skip",
            data={"csrf_token": token},
            headers={"Host": host, "Origin": f"http://{host}"},
        )
        assert skip.status_code == 400
    assert console_world.persistence.load_execution_plan(plan.id).state is PlanState.PAUSED
    assert client.get("/api/plans", headers={"Host": "attacker.example"}).status_code == 400


def test_allowed_hosts_names_the_hosts_a_console_answers_to(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, allowed_hosts=["ops.example.com"])
    assert client.get("/", headers={"Host": "ops.example.com:8080"}).status_code == 200
    assert client.get("/", headers={"Host": "localhost"}).status_code == 400
    with_token = make_client(console_world, TokenAuth(TOKEN))  # any host with auth
    bearer = {"Authorization": f"Bearer {TOKEN}", "Host": "dynflow.internal"}
    assert with_token.get("/api/plans", headers=bearer).status_code == 200
    anywhere = make_client(console_world, allowed_hosts=["*"])
    assert anywhere.get("/", headers={"Host": "whatever.test"}).status_code == 200


# -- guessing credentials --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_wrong_tokens_from_one_address_are_slowed_down(
    console_world: World, make_client: MakeClient
) -> None:
    attacker = make_client(console_world, TokenAuth(TOKEN))
    clock = FakeClock()
    throttle = attacker.app.state.web.throttle  # type: ignore[attr-defined]
    throttle.clock = clock
    wrong = {"Authorization": "Bearer wrong-token-guess"}
    statuses = [attacker.get("/api/plans", headers=wrong).status_code for _ in range(6)]
    assert statuses == [401] * 6  # five free failures; the sixth blocks for 1 s
    blocked = attacker.get("/api/plans", headers=wrong)
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "1"
    right = {"Authorization": f"Bearer {TOKEN}"}
    assert attacker.get("/api/plans", headers=right).status_code == 429  # not even checked
    clock.now += 1.5
    assert attacker.get("/api/plans", headers=wrong).status_code == 401
    second = attacker.get("/api/plans", headers=wrong)
    assert second.status_code == 429
    assert second.headers["retry-after"] == "2"  # each block twice the one before
    clock.now += 4.5
    assert attacker.get("/api/plans", headers=right).status_code == 200  # clears it
    assert attacker.get("/api/plans", headers=wrong).status_code == 401

    # the operator on another machine is not locked out by the attacker
    operator = TestClient(attacker.app, base_url=ORIGIN, client=("10.0.0.7", 40000))
    for _ in range(20):
        attacker.get("/api/plans", headers=wrong)
    assert attacker.get("/api/plans", headers=right).status_code == 429
    assert operator.get("/api/plans", headers=right).status_code == 200
    # a browser's first request without credentials is no guess
    assert all(operator.get("/api/plans").status_code == 401 for _ in range(10))
    assert operator.get("/api/plans", headers=right).status_code == 200


def test_wrong_tokens_in_the_login_form_are_slowed_down(
    console_world: World, make_client: MakeClient
) -> None:
    client = make_client(console_world, TokenAuth(TOKEN))
    throttle = client.app.state.web.throttle  # type: ignore[attr-defined]
    throttle.clock = FakeClock()
    token = csrf_token(client, "/login")
    for _ in range(6):
        page = client.post("/login", data={"csrf_token": token, "token": "guess-guess"})
        assert page.status_code == 401
    blocked = client.post("/login", data={"csrf_token": token, "token": TOKEN})
    assert blocked.status_code == 429
    assert "too many failed attempts" in blocked.text
    assert int(blocked.headers["retry-after"]) >= 1
