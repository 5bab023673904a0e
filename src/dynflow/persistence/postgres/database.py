"""PostgreSQL transactions: single statements autocommitted, and straight driver calls.

In READ COMMITTED every statement reads its own snapshot and one statement is
atomic by itself, so single-statement writes and reads skip BEGIN and COMMIT
(two round trips fewer).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from dynflow.persistence.sql.database import Database, Row

try:  # the driver's connection errors, for statements run on it directly
    import psycopg

    _DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)
    _DATA_ERRORS: tuple[type[Exception], ...] = (psycopg.DataError,)
    _INTEGRITY_ERRORS: tuple[type[Exception], ...] = (psycopg.IntegrityError,)
except ImportError:  # pragma: no cover - PostgreSQL support is an extra
    _DRIVER_ERRORS = _DATA_ERRORS = _INTEGRITY_ERRORS = ()


@functools.cache
def _driver_sql(statement: sa.TextClause) -> str:
    """The statement in psycopg's parameter style."""
    dialect = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect))


class PostgresDatabase(Database):
    driver_errors = _DRIVER_ERRORS
    driver_data_errors = _DATA_ERRORS
    #: a unique key or constraint refused the statement (e.g. a plan's key is taken)
    driver_integrity_errors = _INTEGRITY_ERRORS

    @contextmanager
    def write_statement(self) -> Iterator[sa.Connection]:
        with self._errors(), self.writer.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self._errors(), self.reader.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def run(self, statement: sa.TextClause, parameters: Mapping[str, Any]) -> list[Row]:
        """Run one self-contained statement, autocommitted, straight on a pooled driver
        connection (none of SQLAlchemy's per-statement work: this is for the hot
        statements of the executor and the connector); its rows as tuples."""
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
