"""``dynflow schedules``: list, pause, resume and delete recurring plans.

Creating a schedule takes the action class, so it is done in code
(``world.schedule(...)``); these commands need only the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from dynflow.cli.operations import AsJson, _console, _fail, _print_json, _reader
from dynflow.cli.options import DatabaseUrl

schedules_app = typer.Typer(
    help="List, pause, resume and delete schedules (recurring plans).", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The schedule's name.")]


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


@schedules_app.command("list")
def list_schedules(url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Every schedule with its next due time and its last plan."""
    from dynflow.views import schedule_view

    with _reader(url) as persistence:
        found = persistence.schedules.all()
        if as_json:
            _print_json([schedule_view(s).model_dump(mode="json") for s in found])
            return
    table = Table("name", "cron", "zone", "action", "next run (UTC)", "last plan", box=None)
    for schedule in found:
        table.add_row(
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.action_class,
            "paused" if schedule.paused else _when(schedule.next_run_at),
            schedule.last_plan_id or "",
        )
    console = _console()
    console.print(table)
    console.print(f"{len(found)} schedule(s)")


@schedules_app.command("pause")
def pause_schedule(name: Name, url: DatabaseUrl = None) -> None:
    """Stop triggering the schedule's plans until it is resumed."""
    with _reader(url) as persistence:
        if not persistence.schedules.set_paused(name, True, None):
            raise _fail(f"no schedule {name!r}")
    _console().print(f"schedule {name} paused", highlight=False)


@schedules_app.command("resume")
def resume_schedule(name: Name, url: DatabaseUrl = None) -> None:
    """Trigger the schedule's plans again, from its next due time after now (the due
    times it was paused over are not made up)."""
    from dynflow.services.schedules import next_times

    with _reader(url) as persistence:
        schedule = persistence.schedules.get(name)
        if schedule is None:
            raise _fail(f"no schedule {name!r}")
        upcoming = next_times(schedule.cron, schedule.timezone, datetime.now(UTC))[0]
        persistence.schedules.set_paused(name, False, upcoming)
    _console().print(f"schedule {name} resumed: next run at {_when(upcoming)} UTC")


@schedules_app.command("delete")
def delete_schedule(name: Name, url: DatabaseUrl = None) -> None:
    """Delete the schedule; the plans it triggered stay."""
    with _reader(url) as persistence:
        if not persistence.schedules.delete(name):
            raise _fail(f"no schedule {name!r}")
    _console().print(f"schedule {name} deleted", highlight=False)
