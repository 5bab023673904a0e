"""pytest plugin: the ``dynflow_world`` fixture (an :class:`InThreadWorld` on in-memory SQLite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dynflow.testing.world import InThreadWorld


@pytest.fixture
def dynflow_world() -> Iterator[InThreadWorld]:
    """A fresh in-thread world per test, terminated afterwards."""
    world = InThreadWorld()
    try:
        yield world
    finally:
        world.terminate()
