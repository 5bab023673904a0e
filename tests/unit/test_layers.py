"""Layering rules checked on the source: database-kind branches stay in the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynflow

SOURCE = Path(dynflow.__file__).parent
#: where knowing the database kind is the point: the adapters, their factory, the
#: column types (SQLAlchemy's variants) and the migrations
ALLOWED = (
    "persistence/sql/",
    "persistence/postgres/",
    "persistence/factory.py",
    "persistence/types.py",
    "persistence/migrations/",
)
KINDS = {"sqlite", "postgresql", "postgres", "mysql", "mariadb"}
#: attributes that only stand for "which database is this"
FLAGS = {"single_statement_writes"}


def _is_kind(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.lower() in KINDS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_kind(item) for item in node.elts)
    return False


def kind_branches(source: str) -> list[tuple[int, str]]:
    """(line, what) of every place that tells database kinds apart."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(
            _is_kind(part) for part in [node.left, *node.comparators]
        ):
            found.append((node.lineno, "compares with a database kind"))
        elif isinstance(node, ast.Dict) and any(k is not None and _is_kind(k) for k in node.keys):
            found.append((node.lineno, "a mapping keyed by database kind"))
        elif isinstance(node, ast.Attribute) and node.attr in FLAGS:
            found.append((node.lineno, f"reads {node.attr}"))
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "name"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "dialect"
        ):
            found.append((node.lineno, "reads dialect.name"))
    return found


def test_database_kind_branches_only_in_adapters() -> None:
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith(ALLOWED):
            continue
        offenders += [
            f"{relative}:{line}: {what}" for line, what in kind_branches(path.read_text())
        ]
    assert offenders == [], "database-kind branches belong in the persistence adapters"


@pytest.mark.parametrize(
    "source",
    [
        'if db.name == "postgresql": pass',
        'notify = engine.name in ("mysql", "mariadb")',
        'x = "sqlite" != kind',
        'NOW = {"postgresql": "SELECT now()", "sqlite": "..."}',
        "if connection.dialect.name: pass",
        "if db.dialect.single_statement_writes: pass",
    ],
)
def test_the_scan_finds_branches(source: str) -> None:
    assert len(kind_branches(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        'URL = "postgresql+psycopg://user@host/db"',
        'url = f"sqlite:///{path}"',
        'if name == "world": pass',
        "persistence = open_persistence(config.database_url)",
    ],
)
def test_the_scan_leaves_urls_and_other_names_alone(source: str) -> None:
    assert kind_branches(source) == []
