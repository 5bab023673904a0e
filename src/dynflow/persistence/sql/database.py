"""Engines and the read and write transactions every store runs in.

SQLite needs care to never fail with "database is locked": WAL mode, a busy
timeout, and every write transaction opened with ``BEGIN IMMEDIATE`` on one
writer connection guarded by a process-wide lock (see ``dialects``). Reads use
their own pool. PostgreSQL and MySQL/MariaDB use one pooled engine in READ
COMMITTED.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dynflow.errors import ConfigurationError, DataRefused, PersistenceError
from dynflow.persistence.sql.dialects import dialect_for, safe_url

__all__ = ["IDLE_IN_TRANSACTION", "Database", "Row", "idle_in_transaction_for", "safe_url"]

Row = tuple[Any, ...]

#: seconds after which PostgreSQL (and MariaDB) end a session of the engine left idle
#: inside a transaction, releasing its locks: a process stopped between a write and its
#: commit holds no lock longer (a world: :func:`idle_in_transaction_for` its lease)
IDLE_IN_TRANSACTION = 7.5
#: never shorter: a busy process may well pause a few seconds inside a transaction
MIN_IDLE_IN_TRANSACTION = 5.0


def idle_in_transaction_for(lease: float) -> float:
    """The idle-in-transaction timeout of a world's sessions: half its lease (its locks
    are gone before other worlds may declare it dead), at least
    :data:`MIN_IDLE_IN_TRANSACTION`."""
    return max(lease / 2, MIN_IDLE_IN_TRANSACTION)


class Database:
    """Engines plus the read and write transactions everything else uses."""

    #: errors of the driver itself, for statements run on it directly (see ``run``)
    driver_errors: tuple[type[Exception], ...] = ()
    #: the driver's errors for a value the database refuses (see ``run``)
    driver_data_errors: tuple[type[Exception], ...] = ()

    def __init__(
        self, url: str, *, idle_in_transaction: float | None = IDLE_IN_TRANSACTION
    ) -> None:
        try:
            self.url = make_url(url)
        except Exception as exc:
            raise ConfigurationError(
                f"invalid database URL {safe_url(url)}: {exc}. Expected e.g. "
                "sqlite:///dynflow.sqlite3 or postgresql+psycopg://user@host/db"
            ) from None
        self.dialect = dialect_for(self.url)
        try:
            self.writer, self.reader = self.dialect.create_engines(self.url, idle_in_transaction)
        except Exception as exc:  # e.g. the DBAPI driver is not installed
            raise ConfigurationError(f"cannot use database {safe_url(self.url)}: {exc}") from exc
        self._write_lock = threading.RLock() if self.dialect.single_writer else None
        self._shared = self.writer is self.reader

    @property
    def name(self) -> str:
        return self.dialect.name

    @contextmanager
    def write(self, lock_wait: float | None = None) -> Iterator[sa.Connection]:
        """A write transaction, committed on exit. ``lock_wait``: its statements wait at
        most that many seconds for a row lock another session holds, then fail
        (:class:`PersistenceError`), where the database has such a setting."""
        with self._locked(), self._errors(), self.writer.begin() as connection:
            if lock_wait is None:
                yield connection
            else:
                with self.dialect.lock_wait(connection, lock_wait):
                    yield connection

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held by one process at a time for its whole migration, commit included."""
        with self._errors(), self.dialect.migration_lock(self.writer):
            yield

    @contextmanager
    def write_statement(self) -> Iterator[sa.Connection]:
        """For a write the adapter sends as exactly one statement: here a normal
        transaction (a database where one statement is atomic may skip BEGIN/COMMIT)."""
        with self.write() as connection:
            yield connection

    def run(self, statement: sa.TextClause, parameters: Mapping[str, Any]) -> list[Row]:
        """Run one self-contained statement straight on the driver (PostgreSQL only)."""
        raise ConfigurationError(f"Database.run is for PostgreSQL, not {self.dialect.name}")

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads."""
        if self._shared:
            with self.write() as connection:
                yield connection
            return
        with self._errors(), self.reader.connect() as connection:
            yield connection
            connection.rollback()

    @contextmanager
    def snapshot(self) -> Iterator[sa.Connection]:
        """A read whose statements all see the database as of the first one: a plan
        read in several statements is never torn by a commit between two of them."""
        isolation = self.dialect.snapshot_isolation
        if isolation is None:
            with self.read() as connection:
                yield connection
            return
        with self._errors(), self.reader.connect() as connection:
            # reset to the engine's level when the connection goes back to the pool
            yield connection.execution_options(isolation_level=isolation)
            connection.rollback()

    def now(self) -> datetime:
        """The database's clock (UTC)."""
        with self.read() as connection:
            value = connection.execute(sa.text(self.dialect.now_sql)).scalar_one()
        if isinstance(value, str):  # SQLite
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
        else:
            with self._write_lock:
                yield

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise PersistenceError(
                f"database {safe_url(self.url)} failed: {exc.orig or exc}"
            ) from exc
        except self.driver_errors as exc:  # from ``run``
            raise PersistenceError(f"database {safe_url(self.url)} failed: {exc}") from exc
        except sa.exc.DataError as exc:  # without the statement: it may be megabytes long
            refused = f"database {safe_url(self.url)} refused a value"
            raise DataRefused(f"{refused}: {exc.orig}") from None
        except self.driver_data_errors as exc:
            raise DataRefused(f"database {safe_url(self.url)} refused a value: {exc}") from None

    def check_connection(self) -> None:
        try:
            with self.writer.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:
            reason = getattr(exc, "orig", None) or exc
            raise PersistenceError(
                f"cannot connect to database {safe_url(self.url)}: {reason}".strip()
            ) from None

    def dispose(self) -> None:
        self.writer.dispose()
        if not self._shared:
            self.reader.dispose()
