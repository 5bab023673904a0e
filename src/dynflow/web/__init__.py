"""The web console: ``create_app(world, auth=...)``, an ASGI app (FastAPI) with pages for
plans, worlds and delayed plans, and a JSON API under ``/api/``.

Needs the ``web`` extra: ``pip install 'pydynflow[web]'``.
"""

from dynflow.web.app import create_app
from dynflow.web.auth import NO_AUTH, Auth, BasicAuth, TokenAuth

__all__ = ["NO_AUTH", "Auth", "BasicAuth", "TokenAuth", "create_app"]
