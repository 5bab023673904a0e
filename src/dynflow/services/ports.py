"""The parts every service is handed: who this world is, its settings, its state and
its clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynflow.clock import Clock
    from dynflow.config import WorldConfig
    from dynflow.coordinator import Coordinator
    from dynflow.persistence import PersistencePort


@dataclass(frozen=True)
class Ports:
    """This world's id, configuration, persistence, coordinator and clock."""

    world_id: str
    config: WorldConfig
    persistence: PersistencePort
    coordinator: Coordinator
    clock: Clock
