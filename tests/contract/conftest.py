"""The persistence the contract tests write through, and a second one to read back
with, on each database (``any_db_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynflow.persistence import Persistence, open_persistence


@pytest.fixture
def persistence(any_db_url: str) -> Iterator[Persistence]:
    persistence = open_persistence(any_db_url)
    persistence.migrate()
    yield persistence
    persistence.close()


@pytest.fixture
def reader(any_db_url: str) -> Iterator[Persistence]:
    """A second, independent persistence on the same database: nothing cached in memory."""
    reader = open_persistence(any_db_url)
    yield reader
    reader.close()
