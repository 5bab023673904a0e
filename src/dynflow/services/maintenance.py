"""Maintenance: the database's upkeep of the engine's tables, when it is behind.

Every ``maintenance_interval`` seconds one world at a time (a coordinator lock;
the others skip their turn) asks persistence to vacuum and analyze the engine's
tables that changed a lot since (PostgreSQL; nothing to do elsewhere): latency
stays flat under sustained load even with autovacuum off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dynflow.errors import DynflowError, LockTaken

if TYPE_CHECKING:
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: the coordinator lock of the world doing the upkeep
MAINTENANCE_LOCK = "maintenance"


class Maintenance:
    """Periodic upkeep of the engine's tables (``maintenance_interval``)."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self._stopped = False

    def start(self) -> None:
        if self.ports.config.maintenance_interval > 0:
            self.ports.clock.schedule(self.ports.config.maintenance_interval, self._tick)

    def stop(self) -> None:
        """No more turns (one in progress finishes); part of ``world.terminate()``."""
        self._stopped = True

    def run_once(self) -> list[str] | None:
        """One turn: the tables done, or None when another world is at it."""
        coordinator = self.ports.coordinator
        try:
            coordinator.acquire(MAINTENANCE_LOCK, "tables")
        except LockTaken:
            return None
        try:
            done = self.ports.persistence.maintain()
        finally:
            coordinator.release(MAINTENANCE_LOCK, "tables")
        if done:
            log.info("vacuumed or analyzed %s", ", ".join(done))
        return done

    def _tick(self) -> None:
        if self._stopped:
            return
        try:
            self.run_once()
        except DynflowError as exc:
            log.warning("upkeep of the engine's tables failed: %s", exc)
        except Exception:
            log.exception("upkeep of the engine's tables failed")
        if not self._stopped:
            self.ports.clock.schedule(self.ports.config.maintenance_interval, self._tick)
