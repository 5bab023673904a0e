"""``dynflow plans set-code-version``: move a paused or planned plan to another code
version, for the executors of that version to run it (see README "Code versions and
rolling upgrades")."""

from __future__ import annotations

from typing import Annotated

import typer

from dynflow.cli.operations import _client, _console, _state
from dynflow.cli.options import DatabaseUrl


def set_code_version(
    plan_id: str,
    version: Annotated[
        str | None, typer.Argument(help="The code version to move the plan to.")
    ] = None,
    none: Annotated[
        bool, typer.Option("--none", help="No code version: any executor world runs it.")
    ] = False,
    url: DatabaseUrl = None,
) -> None:
    """Move a paused or planned plan to another code version (an executor world of that
    version runs it: resume a paused plan, execute a planned one)."""
    if (version is None) == (not none):
        raise typer.BadParameter("give a VERSION or --none (not both)", param_hint="VERSION")
    with _client(url) as world:
        plan = world.set_code_version(plan_id, None if none else version)
    shown = plan.code_version or "none (any executor)"
    _console().print(f"plan {plan.id} ({_state(plan)}) is now of code version {shown}")
