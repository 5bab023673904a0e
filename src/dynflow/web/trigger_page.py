"""The console's "Trigger" page: start a plan of an action class the application lists
as triggerable (``create_app(triggerable=[...])``), with JSON arguments."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from dynflow.errors import DynflowError, PlanningFailed
from dynflow.web.inbound import TriggerRequest, trigger

if TYPE_CHECKING:
    from dynflow.web.app import Web


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _json(text: str, name: str, kind: type, example: str) -> Any:
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON ({exc}): e.g. {example}") from None
    if not isinstance(value, kind):
        shape = "array" if kind is list else "object"
        raise ValueError(f"{name} must be a JSON {shape}: e.g. {example}")
    return value


def router(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    world = web.console.world

    def page(
        request: Request, status: int = 200, error: str | None = None, **values: str
    ) -> Response:
        return web.render(
            request,
            "trigger.html",
            status,
            actions=[cls.class_name() for cls in web.triggers.classes()],
            error=error,
            values=values,
        )

    @router.get("/trigger", response_class=HTMLResponse)
    def trigger_page(request: Request, action: str = "") -> Response:
        return page(request, action=action)

    @router.post("/trigger", response_class=HTMLResponse)
    async def trigger_plan(request: Request) -> Response:
        form = await request.form()
        values = {
            n: _field(form, n) for n in ("action", "args", "kwargs", "key", "priority", "deadline")
        }
        try:
            options: dict[str, Any] = {
                "action": values["action"],
                "args": _json(values["args"], "arguments", list, '["web-1"]'),
                "kwargs": _json(values["kwargs"], "keyword arguments", dict, '{"size": 2}'),
            }
            for name in ("key", "priority", "deadline"):
                if values[name]:
                    options[name] = values[name]
            accepted = trigger(world, web.triggers, TriggerRequest.model_validate(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            return page(request, 400, f"invalid request: {problems}", **values)
        except ValueError as exc:
            return page(request, 400, str(exc), **values)
        except HTTPException as exc:
            return page(request, exc.status_code, str(exc.detail), **values)
        except PlanningFailed as exc:
            return page(
                request, 409, f"planning plan {exc.execution_plan_id} failed: {exc}", **values
            )
        except DynflowError as exc:
            status = 404 if "cannot be triggered here" in str(exc) else 409
            return page(request, status, str(exc), **values)
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}/plans/{accepted.execution_plan_id}", status_code=303)

    return router
