"""Transaction adapters: run plan and finalize phases inside the application's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from dynflow.errors import ConfigurationError


class TransactionAdapter(Protocol):
    def transaction(self) -> AbstractContextManager[Any]:
        """A context that commits on success and rolls back when the body raises."""
        ...


class NoTransaction:
    """No application database: phases run without a transaction (``transaction`` is None)."""

    def transaction(self) -> AbstractContextManager[Any]:
        return nullcontext(None)


class SqlAlchemyTransaction:
    """Wraps an application ``Engine`` (yields a ``Connection``) or a session factory
    such as ``sessionmaker`` (yields a ``Session``)."""

    def __init__(self, bind: Any) -> None:
        import sqlalchemy as sa

        if isinstance(bind, sa.Engine):
            self._engine: sa.Engine | None = bind
            self._factory: Any = None
        elif callable(bind):
            self._engine = None
            self._factory = bind
        else:
            raise ConfigurationError(
                f"transaction_adapter must be a SQLAlchemy Engine, a session factory or an "
                f"object with a transaction() method, not {type(bind).__name__}"
            )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        if self._engine is not None:
            with self._engine.begin() as connection:
                yield connection
            return
        with self._factory() as session, session.begin():
            yield session


def transaction_adapter(value: Any) -> TransactionAdapter:
    """Turn the ``transaction_adapter=`` world option into an adapter."""
    if value is None:
        return NoTransaction()
    if hasattr(value, "transaction") and callable(value.transaction):
        adapter: TransactionAdapter = value
        return adapter
    return SqlAlchemyTransaction(value)
