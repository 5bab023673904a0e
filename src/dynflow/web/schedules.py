"""The console's "Schedules" page and its JSON API: recurring plans, their next due
times and latest plans; pause, resume and delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dynflow.errors import NotFound
from dynflow.views import ActionOutcome, ScheduleView, schedule_view

if TYPE_CHECKING:
    from dynflow.web.app import Web
    from dynflow.world import World

#: latest plans shown per schedule
RECENT = 5


def schedules(world: World) -> list[ScheduleView]:
    views = []
    for schedule in world.schedules():
        ids = world.persistence.schedules.recent_plan_ids(schedule.name, RECENT)
        plans = world.persistence.find_execution_plans({"id": ids}) if ids else []
        plans.sort(key=lambda p: ids.index(p.id))
        views.append(schedule_view(schedule, plans))
    return views


def _command(world: World, name: str, what: str) -> ActionOutcome:
    if what == "pause":
        world.scheduler.pause(name)
    elif what == "resume":
        world.scheduler.resume(name)
    elif not world.unschedule(name):
        raise NotFound(f"no schedule {name!r}")
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[what]
    return ActionOutcome(ok=True, message=f"schedule {name} {done}")


def pages(web: Web) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    world = web.console.world

    def page(request: Request, outcome: ActionOutcome | None) -> Response:
        return web.render(
            request,
            "schedules.html",
            schedules=schedules(world),
            message=outcome.message if outcome else None,
            ok=outcome.ok if outcome else True,
        )

    @router.get("/schedules", response_class=HTMLResponse)
    def schedules_page(request: Request) -> Response:
        return page(request, None)

    def act(what: str) -> Callable[[Request, str], Response]:
        def command(request: Request, name: str) -> Response:
            return page(request, _command(world, name, what))

        return command

    for what in ("pause", "resume", "delete"):
        router.add_api_route(
            f"/schedules/{{name}}/{what}",
            act(what),
            methods=["POST"],
            response_class=HTMLResponse,
            name=f"schedule_{what}_page",
        )
    return router


def api(web: Web) -> APIRouter:
    router = APIRouter(tags=["console"])
    world = web.console.world

    @router.get("/schedules", response_model=list[ScheduleView])
    def list_schedules() -> list[ScheduleView]:
        """Every schedule, its next due times and its latest plans."""
        return schedules(world)

    def act(what: str) -> Callable[[str], ActionOutcome]:
        def command(name: str) -> ActionOutcome:
            return _command(world, name, what)

        command.__doc__ = f"{what.capitalize()} the schedule."
        return command

    for what in ("pause", "resume", "delete"):
        router.add_api_route(
            f"/schedules/{{name}}/{what}",
            act(what),
            methods=["POST"],
            response_model=ActionOutcome,
            name=f"schedule_{what}",
        )
    return router
