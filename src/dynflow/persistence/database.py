"""Engines, transactions and dialect hooks.

SQLite needs care to never fail with "database is locked": WAL mode, a busy
timeout, and every write transaction opened with ``BEGIN IMMEDIATE`` on one
writer connection guarded by a process-wide lock. Reads use their own pool.
PostgreSQL and MySQL/MariaDB use one pooled engine in READ COMMITTED.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from dynflow.errors import ConfigurationError, LockTaken, PersistenceError

_SQLITE_BUSY_TIMEOUT_MS = 30_000

Row = tuple[Any, ...]

try:  # the driver's connection errors, for statements run on it directly
    import psycopg

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
except ImportError:  # pragma: no cover - PostgreSQL support is an extra
    _DRIVER_ERRORS = ()


@functools.cache
def _driver_sql(statement: sa.TextClause) -> str:
    """The statement in psycopg's parameter style."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect))


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return str(url).split(":", 1)[0] + ":…"


@dataclass(frozen=True)
class Dialect:
    """What differs between database kinds, in one place."""

    name: str
    #: one writer at a time, across threads of this process
    single_writer: bool = False
    #: ``bulk.write`` sends one atomic statement, so no explicit transaction is needed
    single_statement_writes: bool = False

    def create_engines(self, url: URL) -> tuple[sa.Engine, sa.Engine]:
        """(writer, reader) engines."""
        engine = sa.create_engine(
            url,
            isolation_level="READ COMMITTED",
            pool_size=10,
            max_overflow=20,
            pool_recycle=3600,
        )
        return engine, engine

    def migration_lock(self, connection: sa.Connection) -> None:
        """Serialise concurrent migrations from several processes."""

    def migration_unlock(self, connection: sa.Connection) -> None:
        """Release the migration lock, when it does not end with the transaction."""


@dataclass(frozen=True)
class PostgresDialect(Dialect):
    single_statement_writes: bool = True

    def migration_lock(self, connection: sa.Connection) -> None:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(727166342)"))


@dataclass(frozen=True)
class MysqlDialect(Dialect):
    def migration_lock(self, connection: sa.Connection) -> None:
        taken = connection.execute(sa.text("SELECT GET_LOCK('dynflow_migrations', 120)")).scalar()
        if taken != 1:
            raise PersistenceError(
                "another process has been migrating the database for 120s: giving up"
            )

    def migration_unlock(self, connection: sa.Connection) -> None:
        # a session lock: held by the pooled connection until released
        connection.execute(sa.text("SELECT RELEASE_LOCK('dynflow_migrations')"))


@dataclass(frozen=True)
class SqliteDialect(Dialect):
    single_writer: bool = True

    def create_engines(self, url: URL) -> tuple[sa.Engine, sa.Engine]:
        memory = url.database in (None, "", ":memory:") or "mode=memory" in str(url)
        args: dict[str, Any] = {
            "check_same_thread": False,
            "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000,
        }
        if memory:
            # one shared connection; every use goes through the writer lock
            engine = sa.create_engine(url, connect_args=args, poolclass=StaticPool)
            _sqlite_pragmas(engine, wal=False, begin="BEGIN IMMEDIATE")
            return engine, engine
        if url.database:
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        writer = sa.create_engine(url, connect_args=args, pool_size=1, max_overflow=0)
        reader = sa.create_engine(url, connect_args=args, pool_size=5, max_overflow=10)
        _sqlite_pragmas(writer, wal=True, begin="BEGIN IMMEDIATE")
        _sqlite_pragmas(reader, wal=True, begin="BEGIN")
        return writer, reader


def _sqlite_pragmas(engine: sa.Engine, *, wal: bool, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take control of transactions from the sqlite3 module
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # writers BEGIN IMMEDIATE: take the write lock up front (waiting on
        # busy_timeout) instead of failing when a read transaction upgrades
        connection.exec_driver_sql(begin)


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once. The switch needs the file to itself and SQLite
    answers "locked" at once instead of waiting, so wait here."""
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def dialect_for(url: URL) -> Dialect:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SqliteDialect("sqlite")
    if backend == "postgresql":
        return PostgresDialect("postgresql")
    if backend in ("mysql", "mariadb"):
        return MysqlDialect("mysql")
    raise ConfigurationError(
        f"unsupported database {safe_url(url)}: use sqlite://, postgresql+psycopg:// "
        "or mysql+pymysql://"
    )


class Database:
    """Engines plus the read and write transactions everything else uses."""

    def __init__(self, url: str) -> None:
        try:
            self.url = make_url(url)
        except Exception as exc:
            raise ConfigurationError(
                f"invalid database URL {safe_url(url)}: {exc}. Expected e.g. "
                "sqlite:///dynflow.sqlite3 or postgresql+psycopg://user@host/db"
            ) from None
        self.dialect = dialect_for(self.url)
        try:
            self.writer, self.reader = self.dialect.create_engines(self.url)
        except Exception as exc:  # e.g. the DBAPI driver is not installed
            raise ConfigurationError(f"cannot use database {safe_url(self.url)}: {exc}") from exc
        self._write_lock = threading.RLock() if self.dialect.single_writer else None
        self._shared = self.writer is self.reader

    @property
    def name(self) -> str:
        return self.dialect.name

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction, committed on exit."""
        with self._locked(), self._errors(), self.writer.begin() as connection:
            yield connection

    @contextmanager
    def write_statement(self) -> Iterator[sa.Connection]:
        """For a write that the dialect sends as exactly one statement (see ``bulk``).

        Where one statement is atomic by itself (PostgreSQL), it runs without BEGIN
        and COMMIT: one round trip instead of two. Elsewhere, a normal transaction.
        """
        if not self.dialect.single_statement_writes:
            with self.write() as connection:
                yield connection
            return
        with self._errors(), self.writer.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def run(self, statement: sa.TextClause, parameters: Mapping[str, Any]) -> list[Row]:
        """PostgreSQL: run one self-contained statement, autocommitted, straight on a
        pooled driver connection (none of SQLAlchemy's per-statement work: this is for
        the hot statements of the executor and the connector); its rows as tuples."""
        if self.dialect.name != "postgresql":
            raise ConfigurationError(f"Database.run is for PostgreSQL, not {self.dialect.name}")
        sql = _driver_sql(statement)
        with self._errors():
            pooled = self.writer.raw_connection()
            try:
                driver: Any = pooled.driver_connection
                driver.autocommit = True
                try:
                    cursor = driver.execute(sql, parameters)
                    return cursor.fetchall() if cursor.description is not None else []
                finally:
                    if not driver.closed:
                        driver.autocommit = False
            except _DRIVER_ERRORS as exc:
                pooled.invalidate(exc)  # never handed out again
                raise
            finally:
                pooled.close()  # back to the pool

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads.

        On PostgreSQL without BEGIN and COMMIT: in READ COMMITTED every statement
        reads its own snapshot anyway, so a read transaction would only add two round
        trips (and the driver switches to autocommit without one).
        """
        if self.dialect.single_statement_writes:
            with self._errors(), self.reader.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
            return
        if self._shared:
            with self.write() as connection:
                yield connection
            return
        with self._errors(), self.reader.connect() as connection:
            yield connection
            connection.rollback()

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
        except _DRIVER_ERRORS as exc:  # from ``run``
            raise PersistenceError(f"database {safe_url(self.url)} failed: {exc}") from exc

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


@contextmanager
def locks_taken(locks: Sequence[Mapping[str, Any]]) -> Iterator[None]:
    """Turn the unique-key violation of a write that takes coordinator ``locks`` into
    :class:`LockTaken` (the first lock's class and id: the write is all or nothing)."""
    try:
        yield
    except sa.exc.IntegrityError:
        first = locks[0] if locks else {"class": "lock", "id": "?"}
        raise LockTaken(str(first["class"]), str(first["id"]), None) from None
