"""Retention: deleting stopped plans that ended long ago.

``world.clean(older_than)`` deletes, in batches of one transaction each, the
top-level plans that stopped before ``older_than``, each with its sub-plans,
steps, actions and history. One world cleans at a time (a coordinator lock).
``World(retention=timedelta(days=30))`` cleans every ``retention_interval``
seconds (one world at a time, the others skip their turn).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynflow.clock import aware_utc
from dynflow.errors import ConfigurationError, ExecutionError, LockTaken
from dynflow.execution_plan.states import PlanResult

if TYPE_CHECKING:
    from dynflow.services.ports import Ports

log = logging.getLogger(__name__)

#: the coordinator lock of the world that is cleaning
RETENTION_LOCK = "retention"

#: top-level plans per transaction
BATCH = 500


class Retention:
    """Deletes old plans, on request and (with ``retention``) periodically."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self.world_id = ports.world_id
        self._stopped = False

    def start(self) -> None:
        if self.ports.config.retention is not None:
            self.ports.clock.schedule(self.ports.config.retention_interval, self._tick)

    def stop(self) -> None:
        """No more batches (the one in progress commits); part of ``world.terminate()``."""
        self._stopped = True

    def clean(
        self,
        older_than: timedelta | datetime,
        results: Iterable[PlanResult | str] | None = None,
        *,
        dry_run: bool = False,
        batch_size: int = BATCH,
    ) -> int:
        """Delete the stopped plans that ended before ``older_than`` (an aware datetime,
        or a timedelta back from now), only those with one of ``results`` if given;
        how many plans went, sub-plans included (``dry_run``: would go)."""
        before = self._before(older_than)
        wanted = None if results is None else [plan_result(r) for r in results]
        try:
            self.ports.coordinator.acquire(RETENTION_LOCK, "clean")
        except LockTaken as exc:
            raise ExecutionError(
                f"world {exc.owner_id} is cleaning old plans already: try again when it is done"
            ) from None
        try:
            return self._batches(before, wanted, dry_run, batch_size)
        finally:
            self.ports.coordinator.release(RETENTION_LOCK, "clean")

    def _batches(
        self, before: datetime, results: list[PlanResult] | None, dry_run: bool, size: int
    ) -> int:
        total, after, batches = 0, None, 0
        while not self._stopped:
            count, after = self.ports.persistence.delete_old_plans(
                before, results, after=after, limit=size, dry_run=dry_run
            )
            if after is None:
                break
            total, batches = total + count, batches + 1
            if batches % 20 == 0:
                log.info("cleaning plans that ended before %s: %d so far", before, total)
        log.info(
            "%s %d plan(s) that ended before %s",
            "would delete" if dry_run else "deleted",
            total,
            before.isoformat(),
        )
        return total

    def _before(self, older_than: Any) -> datetime:
        if isinstance(older_than, timedelta):
            if older_than < timedelta(0):
                raise ConfigurationError(
                    f"older_than must not be negative, got {older_than!r}: e.g. timedelta(days=30)"
                )
            return self.ports.clock.utcnow() - older_than
        if isinstance(older_than, datetime):
            return aware_utc(older_than, "older_than", "or a timedelta (e.g. timedelta(days=30))")
        raise ConfigurationError(
            f"older_than must be a timedelta or an aware datetime, got {older_than!r}"
        )

    def _tick(self) -> None:
        if self._stopped:
            return
        retention = self.ports.config.retention
        assert retention is not None
        try:
            self.clean(retention)
        except ExecutionError as exc:  # another world is at it: its turn, not ours
            log.debug("periodic clean skipped: %s", exc)
        except Exception:
            log.exception("cleaning old plans failed")
        if not self._stopped:
            self.ports.clock.schedule(self.ports.config.retention_interval, self._tick)


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` as a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    number, unit = text[:-1], text[-1:].lower()
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if unit not in units or not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            f"cannot read the age {text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return timedelta(seconds=value * units[unit])


def plan_result(value: PlanResult | str) -> PlanResult:
    try:
        return PlanResult(value)
    except ValueError:
        known = ", ".join(r.value for r in PlanResult)
        raise ConfigurationError(f"unknown plan result {value!r}: use one of {known}") from None
