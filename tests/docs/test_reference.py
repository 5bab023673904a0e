"""The reference pages cover what exists: every public name, every command and option,
every World option and every API route. A new one that is not documented fails here."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import dynflow
import dynflow.testing
import dynflow.web
from dynflow import World
from dynflow.cli.main import app
from dynflow.config import WorldConfig
from dynflow.web import NO_AUTH, create_app

REFERENCE = Path(__file__).parents[2] / "docs" / "reference"


def page(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("module", [dynflow, dynflow.testing, dynflow.web])
def test_every_public_name_is_rendered_from_its_docstring(module: Any) -> None:
    rendered = set(re.findall(r"^::: ([\w.]+)$", page_texts(), re.M))
    missing = [
        name
        for name in module.__all__
        if name != "__version__" and f"{module.__name__}.{name}" not in rendered
    ]
    assert not missing, f"add '::: {module.__name__}.NAME' to docs/reference for {missing}"


def page_texts() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md")))


def commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield path, command


CLI = list(commands(typer.main.get_command(app), ("dynflow",)))


def test_the_cli_has_commands() -> None:
    assert len(CLI) >= 15


@pytest.mark.parametrize(("path", "command"), CLI, ids=[" ".join(p) for p, _ in CLI])
def test_every_command_and_option_is_in_the_cli_reference(
    path: tuple[str, ...], command: Any
) -> None:
    text = page("cli.md")
    match = re.search(
        rf"^## `{' '.join(path)}\b[^\n]*\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S
    )
    assert match, f"docs/reference/cli.md has no section '## `{' '.join(path)}`'"
    for param in command.params:
        if param.name == "help":
            continue
        if type(param).__name__.endswith("Argument"):
            assert param.name.upper() in match.group(0), f"{path}: argument {param.name}"
            continue
        for option in param.opts:
            assert f"`{option}`" in match["body"], f"{' '.join(path)}: option {option} missing"


def test_every_world_option_is_in_the_configuration_reference() -> None:
    text = page("configuration.md")
    missing = [f.name for f in dataclasses.fields(WorldConfig) if f"`{f.name}`" not in text]
    assert not missing, f"World options missing from docs/reference/configuration.md: {missing}"


def test_every_api_route_is_in_the_http_reference(tmp_path: Path) -> None:
    with World(f"sqlite:///{tmp_path / 'routes.sqlite3'}", executor=False) as world:
        paths = create_app(world, auth=NO_AUTH).openapi()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method in operations
    ]
    text = page("http-api.md").replace("{plan_id}", "{id}").replace("{world_id}", "{id}")
    assert len(routes) >= 12
    missing = [
        f"{method} {path}"
        for method, path in routes
        if f"`{method} {path.replace('{plan_id}', '{id}').replace('{world_id}', '{id}')}`"
        not in text
    ]
    assert not missing, f"routes missing from docs/reference/http-api.md: {missing}"
