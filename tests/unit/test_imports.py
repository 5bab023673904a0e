"""The package's import rules (STYLE.md, "Dependency rule"), read from the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynflow

SRC = Path(dynflow.__file__).parent

#: the only packages (and the package root) that may import ``dynflow.world``
MAY_IMPORT_WORLD = ("dynflow", "dynflow.testing", "dynflow.web", "dynflow.cli")

#: the parts that do the work; the world wires them together, never the other way round
SERVICE_PACKAGES = (
    "dynflow.services",
    "dynflow.cluster",
    "dynflow.executor",
    "dynflow.persistence",
)

#: packages that know nothing of databases or threads
PURE_PACKAGES = (
    "dynflow.flows",
    "dynflow.execution_plan",
    "dynflow.director",
    "dynflow.readiness",
    "dynflow.action",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.update(id(inner) for inner in ast.walk(node))
    return nodes


def imports(module: str, *, runtime_only: bool = False) -> Iterator[str]:
    """The dotted names ``module`` imports (``from a import b``: ``a.b`` if it is a
    module, else ``a``), anywhere in the file."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` is (or is in)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        targets = {_owner(name) for name in imports(module, runtime_only=True)}
        # a parent package is always imported first: that is no edge of a cycle
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_root_testing_web_and_cli_import_the_world(module: str) -> None:
    if _in(module, MAY_IMPORT_WORLD[1:]) or module in ("dynflow", "dynflow.world"):
        return
    assert "dynflow.world" not in {_owner(name) for name in imports(module)}, (
        f"{module} imports dynflow.world: take the part it needs as a parameter instead"
    )


def test_the_services_never_import_the_world() -> None:
    offenders = [
        module
        for module in MODULES
        if _in(module, SERVICE_PACKAGES)
        and "dynflow.world" in {_owner(name) for name in imports(module)}
    ]
    assert offenders == []


def test_pure_packages_import_no_database_and_no_threads() -> None:
    offenders = {
        module: name
        for module in MODULES
        if _in(module, PURE_PACKAGES)
        for name in imports(module)
        if name.split(".")[0] in ("sqlalchemy", "threading", "psycopg", "pymysql")
        and not (module == "dynflow.action.registry" and name == "threading")
    }
    assert offenders == {}


def test_no_import_cycle_among_the_engine_modules() -> None:
    graph = _graph()
    engine = {m: {t for t in ts if not _in(t, ("dynflow.web",))} for m, ts in graph.items()}
    engine = {m: ts for m, ts in engine.items() if not _in(m, ("dynflow.web",))}
    assert _cycles(engine) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_command_line_imports_no_world_migrations_or_postgresql() -> None:
    """``dynflow plans list`` starts fast: the package root imports its names on first
    use, the commands import the world when they need one, Alembic is imported to
    migrate and psycopg for PostgreSQL URLs only."""
    code = (
        "import sys, dynflow.cli.main\n"
        "heavy = ['dynflow.world', 'alembic', 'psycopg', 'pydantic', 'dynflow.executor.core']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stderr
