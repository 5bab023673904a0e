"""Engine hooks per database kind: engines, migration lock, clock, NULL ordering.

Each database kind is one :class:`Dialect`; the adapters call its hooks instead
of testing which database they talk to. ``dialect_for`` picks one by URL scheme.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from dynflow.errors import ConfigurationError, PersistenceError

_SQLITE_BUSY_TIMEOUT_MS = 30_000


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return str(url).split(":", 1)[0] + ":…"


@dataclass(frozen=True)
class Dialect:
    """What differs between database kinds below the adapters."""

    name: str
    #: one writer at a time, across threads of this process
    single_writer: bool = False
    #: the database's clock as UTC (a timestamp, or ISO text)
    now_sql: str = "SELECT CURRENT_TIMESTAMP"
    #: the connector of worlds on this database unless configured
    default_connector: str = "database"
    #: the isolation level of a read whose statements must all see one moment (READ
    #: COMMITTED lets every statement see the commits made since the previous one);
    #: None: the reader's own transactions already do (SQLite in WAL mode)
    snapshot_isolation: str | None = "REPEATABLE READ"

    def create_engines(
        self, url: URL, idle_in_transaction: float | None = None
    ) -> tuple[sa.Engine, sa.Engine]:
        """(writer, reader) engines. ``idle_in_transaction``: seconds after which the
        database ends a session left idle inside a transaction (its locks with it),
        where the database can."""
        engine = sa.create_engine(
            url,
            isolation_level="READ COMMITTED",
            pool_size=10,
            max_overflow=20,
            pool_recycle=3600,
        )
        if idle_in_transaction is not None:
            seconds = idle_in_transaction

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                try:
                    for statement in self.session_settings(dbapi_connection, seconds):
                        cursor.execute(statement)
                finally:
                    cursor.close()
                dbapi_connection.commit()

        return engine, engine

    def session_settings(self, dbapi_connection: Any, idle_in_transaction: float) -> list[str]:
        """Statements run on every new connection: end the session when it stays idle
        inside a transaction longer than ``idle_in_transaction`` seconds."""
        return []

    @contextmanager
    def lock_wait(self, connection: sa.Connection, seconds: float) -> Iterator[None]:
        """Inside a transaction on ``connection``: its statements wait at most ``seconds``
        for a row lock held by another session, then fail (nothing where the database
        has no such setting)."""
        yield

    @contextmanager
    def migration_lock(self, engine: sa.Engine) -> Iterator[None]:
        """Serialise migrations from several processes: held from before a migration
        reads the schema's version until after its transaction committed, so that the
        next process reads the new version and runs no step again (MySQL's DDL is not
        transactional: a step run twice fails). SQLite: the write transaction's own
        lock (``BEGIN IMMEDIATE``) does it."""
        yield

    def nulls_last(self, column: sa.ColumnElement[Any], desc: bool) -> list[sa.ColumnElement[Any]]:
        """Order by ``column``, NULL counting as later than any value."""
        return [column.desc().nulls_first() if desc else column.asc().nulls_last()]

    def minute(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """A stored UTC time cut to its minute, as text ``YYYY-MM-DD HH:MM`` (to group by)."""
        return sa.func.to_char(column, "YYYY-MM-DD HH24:MI")


#: the key of PostgreSQL's advisory lock, and the name of MySQL's named lock
_MIGRATION_LOCK_KEY = 727166342
_MIGRATION_LOCK_NAME = "dynflow_migrations"
#: seconds a process waits for another one's migration before giving up
MIGRATION_LOCK_TIMEOUT = 120


@contextmanager
def _session_lock(engine: sa.Engine, take: str, release: str) -> Iterator[None]:
    """A lock of the database session on its own connection, so that it outlives the
    migration's transaction (on another connection) until that one committed."""
    with engine.connect() as connection:
        taken = connection.execute(sa.text(take)).scalar()
        connection.commit()
        if taken == 0:
            raise PersistenceError(
                f"another process has been migrating the database for "
                f"{MIGRATION_LOCK_TIMEOUT}s: check that it is still running (a stuck "
                "`dynflow db upgrade` or world start-up), then try again"
            )
        try:
            yield
        finally:
            try:
                connection.execute(sa.text(release))
                connection.commit()
            except Exception:  # the session is gone, and its lock with it
                connection.invalidate()


@dataclass(frozen=True)
class PostgresDialect(Dialect):
    def session_settings(self, dbapi_connection: Any, idle_in_transaction: float) -> list[str]:
        milliseconds = max(int(idle_in_transaction * 1000), 1)
        return [f"SET idle_in_transaction_session_timeout = {milliseconds}"]

    @contextmanager
    def lock_wait(self, connection: sa.Connection, seconds: float) -> Iterator[None]:
        # until the transaction ends
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {max(int(seconds * 1000), 1)}")
        yield

    @contextmanager
    def migration_lock(self, engine: sa.Engine) -> Iterator[None]:
        key = _MIGRATION_LOCK_KEY
        with _session_lock(
            engine,
            f"SELECT pg_advisory_lock({key})",  # waits as long as it takes
            f"SELECT pg_advisory_unlock({key})",
        ):
            yield


@dataclass(frozen=True)
class MysqlDialect(Dialect):
    now_sql: str = "SELECT UTC_TIMESTAMP(6)"

    def session_settings(self, dbapi_connection: Any, idle_in_transaction: float) -> list[str]:
        # MariaDB only: MySQL has no such setting
        if "mariadb" not in str(dbapi_connection.get_server_info()).lower():
            return []
        return [f"SET SESSION idle_transaction_timeout = {max(math.ceil(idle_in_transaction), 1)}"]

    @contextmanager
    def lock_wait(self, connection: sa.Connection, seconds: float) -> Iterator[None]:
        # a session setting (whole seconds): back to the server's once done
        connection.exec_driver_sql(
            f"SET SESSION innodb_lock_wait_timeout = {max(math.ceil(seconds), 1)}"
        )
        try:
            yield
        finally:
            if not connection.invalidated:
                connection.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = DEFAULT")

    def minute(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.date_format(column, "%Y-%m-%d %H:%i")

    @contextmanager
    def migration_lock(self, engine: sa.Engine) -> Iterator[None]:
        name = _MIGRATION_LOCK_NAME
        with _session_lock(
            engine,
            f"SELECT GET_LOCK('{name}', {MIGRATION_LOCK_TIMEOUT})",  # 0 when timed out
            f"SELECT RELEASE_LOCK('{name}')",
        ):
            yield

    def nulls_last(self, column: sa.ColumnElement[Any], desc: bool) -> list[sa.ColumnElement[Any]]:
        # no NULLS FIRST/LAST, and NULL sorts first
        missing = column.is_(None)
        if desc:
            return [missing.desc(), column.desc()]
        return [missing.asc(), column.asc()]


@dataclass(frozen=True)
class SqliteDialect(Dialect):
    single_writer: bool = True
    now_sql: str = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"

    def minute(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        return sa.func.strftime("%Y-%m-%d %H:%M", column)

    #: a database of one process: its worlds talk in memory
    default_connector: str = "direct"
    #: a read transaction (BEGIN) in WAL mode sees one snapshot from its first read
    snapshot_isolation: str | None = None

    def create_engines(
        self, url: URL, idle_in_transaction: float | None = None
    ) -> tuple[sa.Engine, sa.Engine]:
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


_DIALECTS = {
    "sqlite": SqliteDialect("sqlite"),
    "postgresql": PostgresDialect("postgresql"),
    "mysql": MysqlDialect("mysql"),
    "mariadb": MysqlDialect("mysql"),
}


def dialect_for(url: URL) -> Dialect:
    found = _DIALECTS.get(url.get_backend_name())
    if found is None:
        raise ConfigurationError(
            f"unsupported database {safe_url(url)}: use sqlite://, postgresql+psycopg:// "
            "or mysql+pymysql://"
        )
    return found
