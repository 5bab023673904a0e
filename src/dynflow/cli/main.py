"""The ``dynflow`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from dynflow.cli.operations import limits_app, plans_app, worlds_app
from dynflow.cli.options import DatabaseUrl, database_url
from dynflow.cli.schedules import schedules_app
from dynflow.cli.trigger import trigger_plan
from dynflow.cli.versions import set_code_version

app = typer.Typer(
    help="pydynflow: durable workflows with plan, run and finalize phases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
app.add_typer(db_app, name="db")
plans_app.command("trigger")(trigger_plan)
plans_app.command("set-code-version")(set_code_version)
app.add_typer(plans_app, name="plans")
app.add_typer(worlds_app, name="worlds")
app.add_typer(limits_app, name="limits")
app.add_typer(schedules_app, name="schedules")


@app.command()
def demo(
    url: DatabaseUrl = None,
    fast: Annotated[bool, typer.Option(help="No pauses between steps.")] = False,
) -> None:
    """Provision a small environment: a network, three machines, one failure, a resume."""
    from dynflow.cli.demo import run_demo

    raise typer.Exit(run_demo(database_url(url), fast=fast))


@app.command()
def executor(
    url: DatabaseUrl = None,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining actions (repeat for several)."),
    ] = None,
    queue: Annotated[
        list[str] | None, typer.Option(help="Extra queue NAME=SIZE (repeat for several).")
    ] = None,
    pool_size: Annotated[int, typer.Option(help="Workers of the default queue.")] = 5,
    terminate_timeout: Annotated[
        float, typer.Option(help="Seconds running steps get to finish on SIGTERM/SIGINT.")
    ] = 60.0,
    heartbeat_interval: Annotated[
        float, typer.Option(help="Seconds between two heartbeats of this world.")
    ] = 5.0,
    lease: Annotated[
        float,
        typer.Option(help="A world whose heartbeat is older than this (seconds) is dead."),
    ] = 15.0,
    validity_check_interval: Annotated[
        float, typer.Option(help="Seconds between two checks for dead worlds (0: never).")
    ] = 5.0,
    ping_timeout: Annotated[
        float,
        typer.Option(help="Seconds a world late with its heartbeat gets to answer a ping."),
    ] = 2.0,
    log_level: Annotated[
        str | None,
        typer.Option(help="DEBUG, INFO, WARNING, ERROR (default: $DYNFLOW_LOG_LEVEL, else INFO)."),
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="text, or json: one JSON object per line.")
    ] = "text",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (all addresses), at /metrics; "
            "needs the metrics extra.",
            show_default=False,
        ),
    ] = None,
    auto_execute: Annotated[
        bool,
        typer.Option(
            help="On start, run the plans no live world runs (of dead worlds, and "
            "planned ones whose planning world is gone).",
        ),
    ] = True,
    code_version: Annotated[
        str | None,
        typer.Option(
            envvar="DYNFLOW_CODE_VERSION",
            help="Run only plans of this code version (and those of none); default: "
            "$DYNFLOW_CODE_VERSION, else any plan.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve as an executor world until SIGTERM/SIGINT, then terminate cleanly."""
    from dynflow.cli.executor import serve

    raise typer.Exit(
        serve(
            database_url(url),
            imports=imports or [],
            queues=queue or [],
            pool_size=pool_size,
            terminate_timeout=terminate_timeout,
            heartbeat_interval=heartbeat_interval,
            lease=lease,
            validity_check_interval=validity_check_interval,
            ping_timeout=ping_timeout,
            log_level=log_level,
            log_format=log_format,
            metrics_port=metrics_port,
            auto_execute=auto_execute,
            code_version=code_version or None,
        )
    )


@app.command()
def console(
    url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8642,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="DYNFLOW_CONSOLE_TOKEN",
            help="Token for Bearer requests and the login form (required unless --host "
            "is 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining actions (repeat for several)."),
    ] = None,
    executor: Annotated[
        bool, typer.Option(help="Execute plans in this process too (default: a client world).")
    ] = False,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A host name the console is reached by (repeat for several; default: any "
            "with --token, only localhost/127.0.0.1/[::1] without).",
        ),
    ] = None,
) -> None:
    """Serve the web console (plans, worlds, delayed plans, JSON API) with uvicorn."""
    import importlib
    import importlib.util

    from dynflow.world import World

    if token is None and host != "127.0.0.1":
        typer.echo(
            f"error: refusing to serve the console on {host} without --token: "
            "give a token, or bind to 127.0.0.1",
            err=True,
        )
        raise typer.Exit(2)
    try:
        import uvicorn

        from dynflow.web import NO_AUTH, TokenAuth, create_app
    except ImportError as exc:
        typer.echo(f"error: {exc}: install the web extra: pip install 'pydynflow[web]'", err=True)
        raise typer.Exit(1) from None
    try:
        auth = NO_AUTH if token is None else TokenAuth(token)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for module in imports or []:
        importlib.import_module(module)
    metrics = importlib.util.find_spec("prometheus_client") is not None  # GET /metrics
    world = World(database_url(url), executor=executor, metrics=metrics)
    try:
        app = create_app(world, auth=auth, allowed_hosts=allowed_hosts or None)
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        world.terminate()


@db_app.command("upgrade")
def db_upgrade(url: DatabaseUrl = None) -> None:
    """Apply the schema migrations to the database."""
    from dynflow.errors import DynflowError
    from dynflow.persistence import open_persistence
    from dynflow.persistence.migrate import current_revision, head_revision

    try:
        persistence = open_persistence(database_url(url))
        persistence.migrate()
        revision = current_revision(persistence.db)
        persistence.close()
    except DynflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{persistence.url}: schema at revision {revision} (head {head_revision()})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
