"""``GET /metrics``: the world's Prometheus metrics, in the text exposition format.

Behind the console's authentication, unless ``create_app(metrics_auth=...)`` gives
the scraper its own (e.g. ``TokenAuth`` with Prometheus' ``authorization`` setting, or
``NO_AUTH`` on a private network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from dynflow.errors import NotFound
from dynflow.web.auth import Auth

if TYPE_CHECKING:
    from dynflow.web.app import Web
    from dynflow.world import World


def router(web: Web, world: World, auth: Auth | None) -> APIRouter:
    async def guard(request: Request) -> None:
        if auth is None:
            await web.guard(request)
        elif not auth.authenticate(request, web.sessions):
            from dynflow.web.app import NotAuthenticated

            raise NotAuthenticated()

    router = APIRouter(dependencies=[Depends(guard)])

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        observed = world.observe.metrics
        if observed is None:
            raise NotFound(
                "metrics are off in this world: World(metrics=True), with the metrics extra "
                "(pip install 'pydynflow[metrics]')"
            )
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(observed.registry), media_type=CONTENT_TYPE_LATEST)

    return router
