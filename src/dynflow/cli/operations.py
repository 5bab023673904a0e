"""``dynflow plans`` and ``dynflow worlds``: see and steer plans and worlds from a shell.

The commands run a client world (it executes nothing) on the database connector,
so requests such as resume reach the executor worlds, in any process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dynflow.cli.options import DatabaseUrl, database_url
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ExecutionPlan
from dynflow.world import World

plans_app = typer.Typer(help="List, show and steer execution plans.", no_args_is_help=True)
worlds_app = typer.Typer(help="List, check and invalidate worlds.", no_args_is_help=True)

Wait = Annotated[float, typer.Option(help="Seconds to wait for the plan to stop or pause.")]
_STYLE = {"success": "green", "warning": "magenta", "error": "red", "cancelled": "red"}


@contextmanager
def _client(url: str | None) -> Iterator[World]:
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
    try:
        yield world
    except DynflowError as exc:
        raise _fail(exc) from None
    finally:
        world.terminate()


def _fail(error: BaseException) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False)
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
    page: Annotated[int, typer.Option(min=0)] = 0,
    per_page: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Plans, the latest started first."""
    filters: dict[str, object] = {}
    if state:
        filters["state"] = state
    if result:
        filters["result"] = result
    if label:
        filters["label"] = label
    with _client(url) as world:
        plans = world.persistence.find_execution_plans(
            filters=filters, page=page, per_page=per_page
        )
        total = world.persistence.find_execution_plan_counts(filters)
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
    console = Console()
    console.print(table)
    console.print(f"{len(plans)} of {total} plan(s), page {page}")


@plans_app.command("show")
def show_plan(plan_id: str, url: DatabaseUrl = None) -> None:
    """One plan: its steps, errors and execution history."""
    with _client(url) as world:
        plan = world.persistence.load_execution_plan(plan_id)
    console = Console()
    console.print(f"[bold]{plan.label}[/] {plan.id} {_state(plan)} progress {plan.progress:.0%}")
    if plan.caller_execution_plan_id:
        console.print(f"sub-plan of {plan.caller_execution_plan_id}")
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
            console.print(f"[red]step {step.id}: {step.error}[/]", highlight=False)
        if step.next_attempt_at is not None:
            due = f"{step.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
            console.print(f"step {step.id}: backoff, next attempt at {due}", highlight=False)
    for entry in plan.execution_history:
        console.print(f"{entry.time:%Y-%m-%d %H:%M:%S.%f} {entry.name} ({entry.world_id})")


@plans_app.command("resume")
def resume_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 60.0) -> None:
    """Resume a paused plan (its failed steps run again) on an executor world."""
    with _client(url) as world:
        _report(world.resume(plan_id), plan_id, wait)


@plans_app.command("skip")
def skip_step(plan_id: str, step_id: int, url: DatabaseUrl = None) -> None:
    """Mark a failed step of a paused plan skipped; resume the plan afterwards."""
    with _client(url) as world:
        plan = world.skip(plan_id, step_id)
    Console().print(f"step {step_id} skipped; plan {plan.id} is {_state(plan)}: resume it")


@plans_app.command("cancel")
def cancel_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 10.0) -> None:
    """Cancel a plan: its cancellable steps get the cancel event (or a delayed plan stops)."""
    with _client(url) as world:
        futures = world.cancel(plan_id)
        for future in futures:
            future.result(timeout=wait)
    Console().print(f"cancel sent to plan {plan_id} ({len(futures)} request(s) delivered)")


@plans_app.command("halt")
def halt_plan(plan_id: str, url: DatabaseUrl = None, wait: Wait = 10.0) -> None:
    """Stop a plan at once, whatever its steps are doing."""
    with _client(url) as world:
        _report(world.halt(plan_id), plan_id, wait)


def _report(future: object, plan_id: str, wait: float) -> None:
    from concurrent.futures import Future

    assert isinstance(future, Future)
    try:
        plan = future.result(timeout=wait)
    except TimeoutError:
        Console().print(f"plan {plan_id} is still running: follow it with `dynflow plans show`")
        return
    except Exception as exc:
        raise _fail(exc) from None
    Console().print(f"plan {plan.id} is {_state(plan)}")


@worlds_app.command("list")
def list_worlds(url: DatabaseUrl = None) -> None:
    """Registered worlds, with their role, queues, last heartbeat and plans held."""
    with _client(url) as world:
        worlds = [w for w in world.coordinator.find_worlds() if w.id != world.id]
        locks = world.coordinator.find_locks(lock_class="execution_lock")
    table = Table("role", "queues", "heartbeat (UTC)", "host/pid", "plans", box=None)
    table.add_column("id", no_wrap=True, min_width=36)
    for record in worlds:
        held = sum(1 for lock in locks if lock.owner_id == record.id)
        table.add_row(
            "executor" if record.executor else "client",
            ", ".join(record.queues),
            f"{record.heartbeat_at:%Y-%m-%d %H:%M:%S}" if record.heartbeat_at else "",
            f"{record.meta.get('hostname', '?')}/{record.meta.get('pid', '?')}",
            str(held),
            record.id,
        )
    Console().print(table)


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
            Console().print(f"world {world_id} " + ("answers" if alive else "does not answer"))
            if not alive:
                raise typer.Exit(1)
            return
        invalidated = world.perform_validity_checks()
    Console().print(f"{invalidated} world(s) invalidated")


@worlds_app.command("invalidate")
def invalidate_world(world_id: str, url: DatabaseUrl = None) -> None:
    """Declare a world dead: its locks are released and its plans go to live executors."""
    with _client(url) as world:
        plans = world.invalidate(world_id)
    Console().print(f"world {world_id} invalidated; {plans} plan(s) handed over")
