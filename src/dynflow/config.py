"""World configuration: typed, frozen, with documented defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from dynflow.errors import ConfigurationError
from dynflow.serialization import DEFAULT_MAX_VALUE_BYTES

DEFAULT_DATABASE_URL = "sqlite:///dynflow.sqlite3"


@dataclass(frozen=True)
class WorldConfig:
    #: SQLAlchemy URL of the shared database
    database_url: str = DEFAULT_DATABASE_URL
    #: False: a client-only world that plans and hands execution to executor worlds
    executor: bool = True
    #: worker threads of the ``default`` queue
    pool_size: int = 5
    #: extra queues: name -> worker threads
    queues: Mapping[str, int] = field(default_factory=dict)
    #: "direct" (in-process) or "database"
    connector: str | None = None
    #: apply the rescue strategy when steps fail
    auto_rescue: bool = True
    #: on start, pick up plans left running or planned with no live owner
    auto_execute: bool = True
    world_id: str | None = None
    #: the application's SQLAlchemy engine or session factory (plan/finalize transactions)
    transaction_adapter: Any = None
    #: seconds between two heartbeats of this world's registry record
    heartbeat_interval: float = 5.0
    #: a world whose heartbeat is older than this (database clock) is considered dead
    lease: float = 15.0
    #: seconds between two checks for dead worlds (0: never check periodically)
    validity_check_interval: float = 5.0
    #: seconds a world late with its heartbeat gets to answer a ping
    ping_timeout: float = 2.0
    #: seconds ``terminate()`` waits for running steps by default
    terminate_timeout: float = 60.0
    #: meta data stored in the world registry
    meta: Mapping[str, Any] = field(default_factory=dict)
    #: seconds between two looks for envelopes when the database cannot notify
    connector_poll_interval: float = 0.05
    #: apply migrations on start
    migrate: bool = True
    #: a ``dynflow.clock`` clock; default: real time on a timer thread
    clock: Any = None
    #: seconds between two looks of an executor world for delayed plans whose time came
    delayed_interval: float = 1.0
    #: the largest action input, action output or event payload, in bytes of JSON
    #: (10 MB): a larger input fails planning, a larger output fails its step
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    #: delete stopped plans that ended longer ago than this (a timedelta), every
    #: ``retention_interval`` seconds, one world at a time; None keeps every plan
    retention: timedelta | None = None
    #: seconds between two periodic cleans (with ``retention``)
    retention_interval: float = 3600.0
    #: seconds between two looks (one world at a time) at the engine's tables for the
    #: upkeep the database is behind with: PostgreSQL's VACUUM and ANALYZE of those
    #: that changed a lot since (with autovacuum off, or behind); 0: never
    maintenance_interval: float = 30.0
    #: Prometheus metrics (extra ``metrics``): False: none; True: in a registry of this
    #: world's own (``world.observe.metrics.registry``); or the CollectorRegistry to use
    metrics: Any = False
    #: OpenTelemetry spans (extra ``otel``): True: to the global tracer provider when
    #: opentelemetry-api is installed; False: none; or the TracerProvider to use
    tracing: Any = True
    #: the version of the application code this world runs (default
    #: ``$DYNFLOW_CODE_VERSION``), stamped on every plan it plans; None: any
    code_version: str | None = None

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ConfigurationError(f"pool_size must be >= 1, got {self.pool_size}")
        for name, size in self.queues.items():
            if not isinstance(size, int) or size < 1:
                raise ConfigurationError(f"queue {name!r} needs a pool size >= 1, got {size!r}")
        if not self.delayed_interval > 0:
            raise ConfigurationError(
                f"delayed_interval must be > 0 seconds, got {self.delayed_interval!r}"
            )
        if not isinstance(self.max_value_bytes, int) or self.max_value_bytes < 1:
            raise ConfigurationError(
                f"max_value_bytes must be a number of bytes >= 1, got {self.max_value_bytes!r}"
            )
        if self.connector not in (None, "direct", "database"):
            raise ConfigurationError(
                f"unknown connector {self.connector!r}: use 'direct' or 'database'"
            )
        self._check_timing()
        if self.code_version is not None and (
            not isinstance(self.code_version, str) or not 0 < len(self.code_version) <= 64
        ):
            raise ConfigurationError(
                f"code_version must be a string of 1 to 64 characters or None, "
                f"got {self.code_version!r}"
            )
        if self.retention is not None and (
            not isinstance(self.retention, timedelta) or self.retention <= timedelta(0)
        ):
            raise ConfigurationError(
                f"retention must be a positive timedelta (e.g. timedelta(days=30)) or None, "
                f"got {self.retention!r}"
            )

    def _check_timing(self) -> None:
        """Timing settings that would make a world look dead, or never stop, are refused."""
        for name in (
            "heartbeat_interval",
            "ping_timeout",
            "connector_poll_interval",
            "retention_interval",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
        for name in ("validity_check_interval", "terminate_timeout", "maintenance_interval"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")
        if not self.lease > self.heartbeat_interval:
            raise ConfigurationError(
                f"lease ({self.lease!r} s) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval!r} s), or the world looks dead between two "
                "heartbeats: make it at least three heartbeat intervals"
            )

    @property
    def all_queues(self) -> dict[str, int]:
        return {"default": self.pool_size, **self.queues}

    @classmethod
    def build(cls, database_url: str | None, **options: Any) -> WorldConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown World option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if database_url is not None and not database_url.strip():
            raise ConfigurationError(
                "empty database URL: pass a SQLAlchemy URL, or None for $DYNFLOW_DATABASE_URL "
                f"or {DEFAULT_DATABASE_URL}"
            )
        url = database_url or os.environ.get("DYNFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL
        if options.get("code_version") is None:
            options["code_version"] = os.environ.get("DYNFLOW_CODE_VERSION") or None
        return cls(database_url=url, **options)
