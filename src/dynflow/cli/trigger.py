"""``dynflow plans trigger``: start a plan from a shell or a script.

The command plans in this process (the action's ``plan`` runs here, so its module
must be importable: a dotted class name imports it, ``--import`` names more
modules) and hands the plan to the executor worlds through the database.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Annotated, Any

import typer

from dynflow.action.base import Action
from dynflow.action.registry import lookup
from dynflow.cli.operations import AsJson, _client, _console, _fail, _print_json, _state
from dynflow.cli.options import DatabaseUrl
from dynflow.errors import DynflowError, PlanningFailed, UnknownActionClass
from dynflow.execution_plan.states import PlanResult, PlanState


def _json_list(text: str) -> Any:
    value = _parse(text, "--args", "'[\"web-1\", 2]'")
    if not isinstance(value, list):
        raise typer.BadParameter("must be a JSON array, e.g. '[\"web-1\", 2]'")
    return value


def _json_object(text: str) -> Any:
    value = _parse(text, "--kwargs", "'{\"size\": 2}'")
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"size\": 2}'")
    return value


def _parse(text: str, option: str, example: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON ({exc}): e.g. {option} {example}") from None


def find_action(name: str, modules: list[str]) -> type[Action]:
    """The action class ``name``: a dotted name (its module is imported), or a bare
    class name defined in one of ``modules``."""
    found: list[type[Action]] = []
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise typer.BadParameter(f"cannot import {module_name!r}: {exc}") from None
        found.extend(
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Action) and name in (cls.__name__, cls.class_name())
        )
    unique = list(dict.fromkeys(found))
    if len(unique) == 1:
        return unique[0]
    if len(unique) > 1:
        names = ", ".join(cls.class_name() for cls in unique)
        raise typer.BadParameter(f"{name!r} is ambiguous: use one of {names}")
    if "." in name:
        try:
            return lookup(name)
        except UnknownActionClass:
            pass
    raise typer.BadParameter(
        f"no action class {name!r}: give its dotted name (module.Class) or --import the "
        "module that defines it"
    )


def trigger_plan(
    action: Annotated[str, typer.Argument(help="The action class: module.Class, or Class.")],
    args: Annotated[
        Any,
        typer.Option(parser=_json_list, metavar="JSON", help="Arguments of plan, a JSON array."),
    ] = "[]",
    kwargs: Annotated[
        Any,
        typer.Option(
            parser=_json_object, metavar="JSON", help="Keyword arguments of its plan, an object."
        ),
    ] = "{}",
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module defining actions (repeat for several)."),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds to wait for the plan to stop (0: do not wait). Waiting, the exit "
            "code is 0 only for a plan that ended success or warning."
        ),
    ] = 0.0,
    url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Trigger a plan; print its id (and, with --wait, how it ended)."""
    from dynflow import views  # pydantic: imported when used

    cls = find_action(action, imports or [])
    with _client(url) as world:
        try:
            triggered = world.trigger(cls, *args, **kwargs)
        except PlanningFailed as exc:
            raise _fail(f"planning plan {exc.execution_plan_id} failed: {exc}") from None
        except (DynflowError, TypeError) as exc:
            raise _fail(exc) from None
        plan_id = triggered.execution_plan_id
        plan = None
        if wait > 0:
            try:
                plan = triggered.finished.result(timeout=wait)
            except TimeoutError:
                pass
            except DynflowError as exc:
                raise _fail(exc) from None
    if as_json:
        document: dict[str, Any] = {"execution_plan_id": plan_id}
        if plan is not None:
            document["plan"] = views.plan_summary(plan).model_dump(mode="json")
        _print_json(document)
    elif plan is None:
        still = f"; still running after {wait:g} s" if wait > 0 else ""
        _console().print(f"plan {plan_id} triggered{still}", highlight=False)
    else:
        _console().print(f"plan {plan_id} is {_state(plan)}", highlight=False)
    if wait > 0 and not (
        plan is not None
        and plan.state is PlanState.STOPPED
        and plan.result in (PlanResult.SUCCESS, PlanResult.WARNING)
    ):
        raise typer.Exit(1)
