"""Options shared by the ``dynflow`` commands."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dynflow.config import DEFAULT_DATABASE_URL

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=f"SQLAlchemy URL (default: $DYNFLOW_DATABASE_URL, else {DEFAULT_DATABASE_URL})",
        show_default=False,
    ),
]


def database_url(value: str | None) -> str:
    return value or os.environ.get("DYNFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL
