"""Durable state: execution plans, actions, steps, history and coordinator records.

:class:`PersistencePort` says what the rest of dynflow asks of storage;
``sql`` and ``postgres`` are its adapters; :func:`open_persistence` opens the
adapter for a database URL.
"""

from dynflow.persistence.factory import open_persistence
from dynflow.persistence.port import EnvelopeStore, PersistencePort

#: what the engine asks of storage (a short name for annotations)
Persistence = PersistencePort

__all__ = ["EnvelopeStore", "Persistence", "PersistencePort", "open_persistence"]
