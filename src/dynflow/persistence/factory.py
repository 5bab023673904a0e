"""Opening persistence: the adapter for a database URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from dynflow.errors import ConfigurationError
from dynflow.persistence.sql.adapter import SqlPersistence
from dynflow.persistence.sql.database import IDLE_IN_TRANSACTION

if TYPE_CHECKING:
    from dynflow.persistence.port import PersistencePort
    from dynflow.persistence.postgres.adapter import PostgresPersistence

    #: both adapters implement the port (checked by mypy)
    _PORTS: tuple[type[PersistencePort], ...] = (SqlPersistence, PostgresPersistence)


def _postgres() -> type[SqlPersistence]:
    # imported for PostgreSQL URLs only: psycopg takes a while to import
    from dynflow.persistence.postgres.adapter import PostgresPersistence

    return PostgresPersistence


#: adapters with fast paths, by URL backend; every other database gets the generic one
_ADAPTERS = {"postgresql": _postgres}


def adapter_class(database_url: str) -> type[SqlPersistence]:
    """The adapter class for the URL's database (an invalid URL is the adapter's to
    report)."""
    try:
        backend = make_url(database_url).get_backend_name()
    except Exception:
        return SqlPersistence
    adapter = _ADAPTERS.get(backend)
    return SqlPersistence if adapter is None else adapter()


def open_persistence(
    database_url: str,
    *,
    existing: bool = False,
    idle_in_transaction: float | None = IDLE_IN_TRANSACTION,
) -> SqlPersistence:
    """The persistence of the database at ``database_url``: PostgreSQL's adapter for
    ``postgresql`` URLs, the generic SQLAlchemy one otherwise. ``existing``: refuse a
    SQLite file that does not exist rather than create an empty one (for readers).
    ``idle_in_transaction``: seconds after which PostgreSQL (and MariaDB) end a session
    of this persistence left idle inside a transaction, its locks with it (None: never)."""
    if existing:
        _check_exists(database_url)
    return adapter_class(database_url)(database_url, idle_in_transaction=idle_in_transaction)


def _check_exists(database_url: str) -> None:
    try:
        url = make_url(database_url)
    except Exception:
        return  # the adapter reports a bad URL
    path = url.database
    if (
        url.get_backend_name() == "sqlite"
        and path
        and path != ":memory:"
        and not Path(path).exists()
    ):
        raise ConfigurationError(
            f"no SQLite database at {Path(path).resolve()}: check --database-url "
            "(or create it with `dynflow db upgrade`)"
        )
