"""Durable state: execution plans, actions, steps, history and coordinator records.

:class:`PersistencePort` says what the rest of dynflow asks of storage;
``sql`` and ``postgres`` are its adapters. ``Persistence(url)`` (or
:func:`open_persistence`) opens the adapter for a database URL.
"""

from dynflow.persistence.factory import open_persistence
from dynflow.persistence.port import EnvelopeStore, PersistencePort
from dynflow.persistence.sql.adapter import SqlPersistence

#: the persistence adapters' base class; ``Persistence(url)`` opens the right one
Persistence = SqlPersistence

__all__ = ["EnvelopeStore", "Persistence", "PersistencePort", "open_persistence"]
