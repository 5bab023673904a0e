"""Opening persistence: the adapter for a database URL."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from dynflow.persistence.port import PersistencePort
from dynflow.persistence.postgres.adapter import PostgresPersistence
from dynflow.persistence.sql.adapter import SqlPersistence

#: adapters with fast paths, by URL backend; every other database gets the generic one
_ADAPTERS: dict[str, type[SqlPersistence]] = {"postgresql": PostgresPersistence}
#: both adapters implement the port (checked by mypy)
_PORTS: tuple[type[PersistencePort], ...] = (SqlPersistence, PostgresPersistence)


def adapter_class(database_url: str) -> type[SqlPersistence]:
    """The adapter class for the URL's database (an invalid URL is the adapter's to
    report)."""
    try:
        backend = make_url(database_url).get_backend_name()
    except Exception:
        return SqlPersistence
    return _ADAPTERS.get(backend, SqlPersistence)


def open_persistence(database_url: str) -> SqlPersistence:
    """The persistence of the database at ``database_url``: PostgreSQL's adapter for
    ``postgresql`` URLs, the generic SQLAlchemy one otherwise."""
    return adapter_class(database_url)(database_url)
