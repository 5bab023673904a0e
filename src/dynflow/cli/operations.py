"""``dynflow plans`` and ``dynflow worlds``: see and steer plans and worlds from a shell.

The commands run a client world (it executes nothing) on the database connector,
so requests such as resume reach the executor worlds, in any process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dynflow.cli.options import DatabaseUrl, database_url
from dynflow.coordinator import EXECUTION_LOCK, Coordinator
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.persistence import PersistencePort

if TYPE_CHECKING:
    from dynflow.views import WorldView
    from dynflow.world import World

plans_app = typer.Typer(help="List, show and steer execution plans.", no_args_is_help=True)
worlds_app = typer.Typer(help="List, check and invalidate worlds.", no_args_is_help=True)
limits_app = typer.Typer(help="Holders and waiters of limits.", no_args_is_help=True)

Wait = Annotated[float, typer.Option(help="Seconds to wait for the plan to stop or pause.")]
AsJson = Annotated[
    bool, typer.Option("--json", help="One JSON document on standard output, nothing else.")
]
_STYLE = {"success": "green", "warning": "magenta", "error": "red", "cancelled": "red"}


@contextmanager
def _client(url: str | None) -> Iterator[World]:
    from dynflow.world import World

    try:
        world = World(
            database_url(url),
            executor=False,
            connector="database",
            validity_check_interval=0,
            meta={"role": "dynflow cli"},
        )
    except DynflowError as exc:
        raise _fail(exc) from None
    except Exception as exc:
        raise _database_refused(exc) from None
    try:
        yield world
    except DynflowError as exc:
        raise _fail(exc) from None
    finally:
        world.terminate()


def _database_refused(exc: Exception) -> Exception:
    """A driver's error (e.g. a read-only replica refusing a write) as a one-line
    message; anything else as it was."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return _fail(f"the database refused: {str(exc.orig).strip()}")
    return exc


@contextmanager
def _reader(url: str | None) -> Iterator[PersistencePort]:
    """The database, for commands that only read: nothing is created or migrated."""
    from dynflow.persistence import migrate, open_persistence

    try:
        persistence = open_persistence(database_url(url), existing=True)
    except DynflowError as exc:
        raise _fail(exc) from None
    try:
        revision = migrate.schema_revision(persistence.db)
        if revision != migrate.HEAD:
            found = "has no dynflow schema" if revision is None else f"is at {revision}"
            raise _fail(
                f"database {persistence.url} {found}: run `dynflow db upgrade` with the same "
                "--database-url first"
            )
        yield persistence
    except DynflowError as exc:
        raise _fail(exc) from None
    finally:
        persistence.close()


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")


def _console() -> Console:
    """Rich output; piped, it is never cut to a terminal's width."""
    return Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)


def _choices(values: list[str] | None, kind: type[StrEnum], option: str) -> list[str] | None:
    """The values, checked against the enum: an unknown one is a usage error (exit 2)."""
    known = [str(v) for v in kind]
    for value in values or ():
        if value not in known:
            raise typer.BadParameter(
                f"unknown value {value!r}: use one of {', '.join(known)}", param_hint=option
            )
    return values or None


def _fail(error: BaseException | str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {error}", highlight=False)
    return typer.Exit(1)


def _state(plan: ExecutionPlan) -> str:
    style = _STYLE.get(str(plan.result), "yellow")
    return f"[{style}]{plan.state}/{plan.result}[/]"


@plans_app.command("list")
def list_plans(
    url: DatabaseUrl = None,
    state: Annotated[list[str] | None, typer.Option(help="Only plans in this state.")] = None,
    result: Annotated[list[str] | None, typer.Option(help="Only plans with this result.")] = None,
    label: Annotated[str | None, typer.Option(help="Only plans with this label.")] = None,
    key: Annotated[str | None, typer.Option(help="Only the plan with this key.")] = None,
    code_version: Annotated[
        str | None, typer.Option(help="Only plans of this code version.")
    ] = None,
    page: Annotated[int, typer.Option(min=1, help="Page to show, from 1.")] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: AsJson = False,
) -> None:
    """Plans, the latest started first."""
    filters: dict[str, object] = {}
    if state:
        filters["state"] = _choices(state, PlanState, "--state")
    if result:
        filters["result"] = _choices(result, PlanResult, "--result")
    if label:
        filters["label"] = label
    if key:
        filters["key"] = key
    if code_version:
        filters["code_version"] = code_version
    with _reader(url) as persistence:
        plans = persistence.find_execution_plans(filters=filters, page=page - 1, per_page=per_page)
        total = persistence.find_execution_plan_counts(filters)
    if as_json:
        from dynflow import views  # pydantic: imported when used

        _print_json(
            {
                "items": [views.plan_summary(p).model_dump(mode="json") for p in plans],
                "total": total,
                "page": page,
                "per_page": per_page,
                "pages": max(1, -(-total // per_page)),
            }
        )
        return
    table = Table("label", "state/result", "started (UTC)", "ended (UTC)", box=None)
    table.add_column("id", no_wrap=True, min_width=36)
    for plan in plans:
        table.add_row(
            plan.label,
            _state(plan),
            f"{plan.started_at:%Y-%m-%d %H:%M:%S}" if plan.started_at else "",
            f"{plan.ended_at:%Y-%m-%d %H:%M:%S}" if plan.ended_at else "",
            plan.id,
        )
    console = _console()
    console.print(table)
    console.print(f"{len(plans)} of {total} plan(s), page {page}")


def _options(plan: ExecutionPlan) -> list[tuple[str, object]]:
    """The plan's trigger options and code version that are set."""
    shown: list[tuple[str, object]] = [("priority", plan.priority)]
    for name, value in (
        ("key", plan.key),
        ("deadline (UTC)", plan.deadline_at and f"{plan.deadline_at:%Y-%m-%d %H:%M:%S}"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(plan.labels.items()))),
        ("code version", plan.code_version),
    ):
        if value:
            shown.append((name, value))
    return shown


@plans_app.command("show")
def show_plan(plan_id: str, url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """One plan: its steps, errors and execution history."""
    from dynflow import views  # pydantic: imported when used

    with _reader(url) as persistence:
        plan = persistence.load_execution_plan(plan_id)
        if as_json:
            children = {"caller_execution_plan_id": plan_id}
            sub_plans = persistence.find_execution_plans(filters=children, per_page=1000)
            limits = persistence.find_limits(execution_plan_id=plan_id)
            detail = views.plan_detail(plan, list(sub_plans), limits)
            _print_json(detail.model_dump(mode="json"))
            return
        waits = persistence.find_limits(execution_plan_id=plan_id)
    console = _console()
    console.print(f"[bold]{plan.label}[/] {plan.id} {_state(plan)} progress {plan.progress:.0%}")
    if plan.caller_execution_plan_id:
        console.print(f"sub-plan of {plan.caller_execution_plan_id}")
    for name, value in _options(plan):
        console.print(f"{name}: {value}")
    table = Table("step", "action", "phase", "state", "queue", "attempts", "time (s)", box=None)
    labels = {a.id: a.label for a in plan.actions}
    for step in plan.steps.values():
        table.add_row(
            str(step.id),
            labels.get(step.action_id, step.action_class),
            str(step.phase),
            str(step.state),
            step.queue,
            str(step.attempts),
            f"{step.real_time:.3f}",
        )
    console.print(table)
    for step in plan.steps.values():
        for earlier in step.errors if step.error is None else step.errors[:-1]:
            console.print(f"step {step.id}, retried after: {earlier}", highlight=False)
        if step.error is not None:
            failed = "revert failed: " if step.state == "reverting" else ""
            console.print(f"[red]step {step.id}: {failed}{step.error}[/]", highlight=False)
        keys = [e.key for e in waits if e.step_id == step.id and e.state == "waiting"]
        reason = views.waiting_reason(step, keys)
        if reason is not None:
            console.print(f"step {step.id}: {reason}", highlight=False)
    for entry in plan.execution_history:
        console.print(f"{entry.time:%Y-%m-%d %H:%M:%S.%f} {entry.name} ({entry.world_id})")


@plans_app.command("resume")
def resume_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 60.0) -> None:
    """Resume a paused plan (its failed steps run again) on an executor world."""
    with _client(url) as world:
        _report(world.resume(plan_id), plan_id, wait)


def _reviewer() -> str:
    """Who approves or rejects from a shell: $USER, else "cli"."""
    return os.environ.get("USER") or "cli"


@plans_app.command("execute")
def execute_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 60.0) -> None:
    """Approve a planned plan (made with world.plan) and execute it on an executor world;
    "approved by $USER" goes into its history."""
    from dynflow.services import review

    with _client(url) as world:
        _report(review.approve(world, plan_id, _reviewer()), plan_id, wait)


@plans_app.command("reject")
def reject_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 10.0) -> None:
    """Reject a planned plan: "rejected by $USER" goes into its history; it is halted."""
    from dynflow.services import review

    with _client(url) as world:
        _report(review.reject(world, plan_id, _reviewer()), plan_id, wait)


@plans_app.command("skip")
def skip_step(plan_id: str, step_id: int, url: DatabaseUrl = None) -> None:
    """Mark a failed step of a paused plan skipped; resume the plan afterwards."""
    with _client(url) as world:
        plan = world.skip(plan_id, step_id)
    _console().print(f"step {step_id} skipped; plan {plan.id} is {_state(plan)}: resume it")


@plans_app.command("cancel")
def cancel_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 10.0) -> None:
    """Cancel a plan: its cancellable steps get the cancel event (or a delayed plan stops)."""
    with _client(url) as world:
        futures = world.cancel(plan_id)
        for future in futures:
            future.result(timeout=wait)
    _console().print(f"cancel sent to plan {plan_id} ({len(futures)} request(s) delivered)")


@plans_app.command("revert")
def revert_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 60.0) -> None:
    """Revert a paused or stopped plan: the revert of each action whose run succeeded,
    newest first, on an executor world; it ends stopped/reverted."""
    with _client(url) as world:
        _report(world.revert(plan_id), plan_id, wait)


@plans_app.command("halt")
def halt_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 10.0) -> None:
    """Stop a plan at once, whatever its steps are doing."""
    with _client(url) as world:
        _report(world.halt(plan_id), plan_id, wait)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"not JSON ({exc}): e.g. --data '{{\"approved\": true}}'"
        ) from None


@plans_app.command("event")
def send_event(
    plan_id: str,
    step_id: int,
    data: Annotated[
        Any, typer.Option(parser=_json, metavar="JSON", help="The event payload, as JSON.")
    ] = "null",
    url: DatabaseUrl = None,
    wait: Wait = 10.0,
) -> None:
    """Deliver an event to a suspended step (``run(event=data)``), in whatever world runs it."""
    with _client(url) as world:
        future = world.event(plan_id, step_id, data)
        try:
            future.result(timeout=wait)
        except TimeoutError:
            raise _fail(
                f"the event to step {step_id} of plan {plan_id} was not delivered "
                f"within {wait:g} s: is an executor world running it?"
            ) from None
        except DynflowError as exc:
            raise _fail(exc) from None
    _console().print(f"event delivered to step {step_id} of plan {plan_id}")


def _age(text: str) -> timedelta:
    from dynflow.services.retention import parse_age

    try:
        return parse_age(text)
    except DynflowError as exc:
        raise typer.BadParameter(str(exc)) from None


@plans_app.command("clean")
def clean_plans(
    older_than: Annotated[
        timedelta,
        typer.Option(
            parser=_age, metavar="AGE", help="Plans that stopped longer ago: 30d, 12h, 90m, 2w."
        ),
    ],
    url: DatabaseUrl = None,
    result: Annotated[
        list[str] | None, typer.Option(help="Only plans with this result (repeat for several).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would go; delete nothing.")] = False,
) -> None:
    """Delete stopped plans that ended long ago, with their sub-plans, steps and history."""
    from dynflow.services.retention import plan_result

    try:
        results = None if not result else [plan_result(r) for r in result]
    except DynflowError as exc:
        raise typer.BadParameter(str(exc), param_hint="--result") from None
    with _client(url) as world:
        count = world.retention.clean(older_than, results, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    _console().print(f"{verb} {count} plan(s) that stopped more than {older_than} ago")


def _report(future: object, plan_id: str, wait: float) -> None:
    from concurrent.futures import Future

    assert isinstance(future, Future)
    try:
        plan = future.result(timeout=wait)
    except TimeoutError:
        _console().print(f"plan {plan_id} is still running: follow it with `dynflow plans show`")
        return
    except Exception as exc:
        raise _fail(exc) from None
    _console().print(f"plan {plan.id} is {_state(plan)}")


@limits_app.command("list")
def list_limits(
    key: Annotated[str | None, typer.Option(help="only this key")] = None,
    url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Holders and waiters of every limit key: holders first, then waiters in line."""
    from dynflow import views  # pydantic: imported when used

    with _reader(url) as persistence:
        entries = persistence.find_limits(key=key)
    if as_json:
        _print_json([views.limit_view(e).model_dump(mode="json") for e in entries])
        return
    table = Table("key", "state", "place", "since (UTC)", "plan", "step", "world", box=None)
    for entry in entries:
        since = entry.granted_at if entry.state == "holding" else entry.requested_at
        table.add_row(
            entry.key,
            entry.state,
            "" if entry.position is None else str(entry.position),
            f"{since:%Y-%m-%d %H:%M:%S}" if since else "",
            entry.execution_plan_id,
            str(entry.step_id),
            entry.world_id,
        )
    console = _console()
    console.print(table)
    console.print(f"{len(entries)} holder(s) and waiter(s)")


@worlds_app.command("list")
def list_worlds(url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Registered worlds, with their role, queues, last heartbeat and plans held."""
    from dynflow import views  # pydantic: imported when used

    with _reader(url) as persistence:
        reader = Coordinator(persistence.db, "dynflow-cli")  # registers nothing
        worlds = reader.find_worlds()
        locks = reader.find_locks(lock_class=EXECUTION_LOCK)
        now = reader.database_now()
    if as_json:
        _print_json([views.world_view(w, locks, "", now).model_dump(mode="json") for w in worlds])
        return
    table = Table(
        "role", "queues (busy/workers)", "version", "heartbeat (UTC)", "host/pid", "plans", box=None
    )
    table.add_column("id", no_wrap=True, min_width=36)
    for record in worlds:
        held = sum(1 for lock in locks if lock.owner_id == record.id)
        table.add_row(
            "executor" if record.executor else "client",
            ", ".join(_queue_use(views.world_view(record, locks, "", now))),
            str(record.meta.get("code_version") or "-"),
            f"{record.heartbeat_at:%Y-%m-%d %H:%M:%S}" if record.heartbeat_at else "",
            f"{record.meta.get('hostname', '?')}/{record.meta.get('pid', '?')}",
            str(held),
            record.id,
        )
    _console().print(table)


def _queue_use(world: WorldView) -> list[str]:
    """Each queue with its pool's use at the last heartbeat: ``default 1/5``."""
    sizes, busy = world.pool_sizes, world.pool_busy
    return [f"{q} {busy[q]}/{sizes[q]}" if q in sizes and q in busy else q for q in world.queues]


@worlds_app.command("check")
def check_worlds(
    world_id: Annotated[str | None, typer.Argument(help="Ping this world only.")] = None,
    url: DatabaseUrl = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
) -> None:
    """Ping one world, or invalidate every world whose lease expired."""
    with _client(url) as world:
        if world_id is not None:
            alive = world.ping(world_id, timeout=timeout).result(timeout + 5)
            _console().print(f"world {world_id} " + ("answers" if alive else "does not answer"))
            if not alive:
                raise typer.Exit(1)
            return
        invalidated = world.perform_validity_checks()
    _console().print(f"{invalidated} world(s) invalidated")


@worlds_app.command("invalidate")
def invalidate_world(world_id: str, url: DatabaseUrl = None) -> None:
    """Declare a world dead: its locks are released and its plans go to live executors."""
    with _client(url) as world:
        plans = world.invalidate(world_id)
    _console().print(f"world {world_id} invalidated; {plans} plan(s) handed over")
