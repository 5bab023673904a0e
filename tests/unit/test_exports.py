"""The public surface, pinned by rules rather than by a copy of ``__all__``.

``dynflow``, ``dynflow.testing`` and ``dynflow.web`` each export in ``__all__`` exactly the
public names they define or import (ruff's RUF022 keeps it sorted), every exported class and
function says what it is, and the README's "Public API" section lists exactly what each
exports.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import dynflow
import dynflow.testing
import dynflow.web

PACKAGES = [dynflow, dynflow.testing, dynflow.web]
#: dunder names a package exports on purpose
EXPORTED_DUNDERS = {"__version__"}
ROOT = Path(__file__).resolve().parents[2]


def public_names(package: ModuleType) -> list[str]:
    """What ``package`` defines or imports (also on first use: ``_EXPORTS``), minus
    underscored names and submodules."""
    lazy: dict[str, str] = getattr(package, "_EXPORTS", {})
    return sorted(
        {
            name
            for name, value in vars(package).items()
            if (not name.startswith("_") or name in EXPORTED_DUNDERS)
            and not isinstance(value, ModuleType)
        }
        | set(lazy)
    )


def exported() -> list[tuple[ModuleType, str]]:
    return [(package, name) for package in PACKAGES for name in package.__all__]


def documented() -> dict[str, list[str]]:
    """Package -> the names listed under its ``### `package``` heading in the project's docs."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    found: dict[str, list[str]] = {}
    for path in texts:
        package: str | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                heading = re.fullmatch(r"#+ `(dynflow(?:\.\w+)*)`", line.strip())
                package = heading[1] if heading else None
            elif package is not None and (item := re.match(r"- `(\w+)`", line)):
                found.setdefault(package, []).append(item[1])
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_all_is_every_public_name(package: ModuleType) -> None:
    # the order is ruff's (RUF022: constants, classes, then the rest)
    assert sorted(package.__all__) == public_names(package)
    assert len(set(package.__all__)) == len(package.__all__)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_nothing_private_is_exported(package: ModuleType) -> None:
    assert [n for n in package.__all__ if n.startswith("_") and n not in EXPORTED_DUNDERS] == []


@pytest.mark.parametrize(("package", "name"), exported(), ids=lambda v: getattr(v, "__name__", v))
def test_every_exported_class_and_function_has_a_docstring(package: ModuleType, name: str) -> None:
    value = getattr(package, name)
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return  # a constant (``Cancel``, ``NO_AUTH``, ``__version__``): the docs describe it
    doc = value.__doc__
    assert doc, f"{package.__name__}.{name} has no docstring"
    # dataclasses and named tuples without a docstring get their signature as one
    assert not doc.startswith(f"{name}("), f"{package.__name__}.{name} has no docstring"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_the_readme_lists_exactly_what_each_package_exports(package: ModuleType) -> None:
    listed = documented().get(package.__name__, [])
    assert sorted(listed) == sorted(package.__all__)
    assert len(set(listed)) == len(listed)


def test_the_package_is_marked_typed() -> None:
    assert importlib.resources.files("dynflow").joinpath("py.typed").is_file()


def test_every_exported_error_is_a_dynflow_error() -> None:
    errors = [
        value
        for value in map(vars(dynflow).get, dynflow.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    assert errors
    assert all(issubclass(error, dynflow.DynflowError) for error in errors)


def test_rescue_members() -> None:
    assert {r.name for r in dynflow.Rescue} == {"PAUSE", "SKIP", "FAIL", "REVERT"}


def test_world_signature_matches_the_contract() -> None:
    parameters = inspect.signature(dynflow.World).parameters
    assert list(parameters) == [
        "database_url",
        "executor",
        "pool_size",
        "queues",
        "connector",
        "auto_rescue",
        "auto_execute",
        "world_id",
        "config",
    ]
    assert parameters["database_url"].default is None
    assert parameters["executor"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["executor"].default is True
    assert parameters["pool_size"].default == 5
    assert parameters["auto_rescue"].default is True
    assert parameters["auto_execute"].default is True
    assert parameters["config"].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(
    "method", ["trigger", "plan", "execute", "resume", "skip", "halt", "event", "terminate"]
)
def test_world_has_the_documented_methods(method: str) -> None:
    assert callable(getattr(dynflow.World, method))


def test_in_thread_world_is_a_world() -> None:
    assert issubclass(dynflow.testing.InThreadWorld, dynflow.World)


def test_the_root_imports_its_names_on_first_use() -> None:
    """``dynflow`` names its exports' modules (``_EXPORTS``): each defines or imports the
    name, and ``dir`` lists them before they are used."""
    lazy: dict[str, str] = dynflow._EXPORTS
    assert set(lazy) == set(dynflow.__all__) - EXPORTED_DUNDERS
    assert set(dynflow.__all__) <= set(dir(dynflow))
    for name, module in lazy.items():
        assert getattr(dynflow, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        dynflow.Nothing  # noqa: B018
