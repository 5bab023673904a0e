"""Prometheus metrics of one world (extra ``metrics``).

Counted as things happen, each update O(1) (labelled children are cached):
steps by action and result, step and plan durations, plans finished by result, the
executor's commits. Read at scrape time: the worker pools of this process (busy
workers, size, work waiting for a worker), and from the database (one grouped query
each) the plans by state, the envelopes waiting for their receiver, and each
registered world's heartbeat age. The database gauges are the same from every
process of a cluster: scrape them from one place, or aggregate them with ``max``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dynflow.errors import ConfigurationError

if TYPE_CHECKING:
    from dynflow.coordinator import Coordinator
    from dynflow.execution_plan.model import ExecutionPlan
    from dynflow.persistence import PersistencePort

log = logging.getLogger(__name__)

#: seconds: a step's phase (the default Prometheus buckets, with longer ones)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: seconds: a plan's wall time, start to stop
PLAN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


class PoolView(Protocol):
    """A worker pool as the metrics see it."""

    size: int

    def busy(self) -> int: ...

    def waiting(self) -> int: ...


class Metrics:
    """A world's metrics, in ``registry`` (its own unless one is given)."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        persistence: PersistencePort,
        coordinator: Coordinator,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        if not isinstance(self.registry, CollectorRegistry):
            raise ConfigurationError(
                f"metrics must be True, False or a prometheus_client CollectorRegistry, "
                f"got {registry!r}"
            )
        #: the worker pools of this world's executor, by queue (set by the world)
        self.pools: dict[str, PoolView] = {}
        try:
            self._register(persistence, coordinator)
        except ValueError as exc:  # a second world on one registry
            raise ConfigurationError(
                f"cannot register the dynflow metrics: {exc}. Each world needs its own "
                "registry: World(metrics=True) makes one (world.observe.metrics.registry)"
            ) from None
        self._steps: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._finished: dict[str, Any] = {}

    def _register(self, persistence: PersistencePort, coordinator: Coordinator) -> None:
        registry = self.registry
        self.steps = Counter(
            "dynflow_steps",
            "Step phases run, by action class and result (success, error, suspended, "
            "cancelled); each attempt of a retried step counts",
            ["action", "result"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "dynflow_step_duration_seconds",
            "Execution time of step phases, by action class",
            ["action"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.plans_finished = Counter(
            "dynflow_plans_finished",
            "Plans this world stopped, by result",
            ["result"],
            registry=registry,
        )
        self.plans_paused = Counter(
            "dynflow_plans_paused",
            "Plans this world paused (on an error, or terminating)",
            [],
            registry=registry,
        )
        self.plan_duration = Histogram(
            "dynflow_plan_duration_seconds",
            "Wall time of the plans this world stopped, from first start to stop",
            buckets=PLAN_BUCKETS,
            registry=registry,
        )
        self.commits = Counter(
            "dynflow_executor_commits",
            "Batched commits of the executor (each writes the changes of many steps)",
            registry=registry,
        )
        registry.register(_Gauges(self, persistence, coordinator))

    # -- updates (O(1)) -----------------------------------------------------------------

    def step(self, action: str, result: str, seconds: float) -> None:
        key = (action, result)
        counter = self._steps.get(key)
        if counter is None:
            counter = self._steps[key] = self.steps.labels(action, result)
        counter.inc()
        duration = self._durations.get(action)
        if duration is None:
            duration = self._durations[action] = self.step_duration.labels(action)
        duration.observe(seconds)

    def plan_finished(self, plan: ExecutionPlan) -> None:
        if str(plan.state) != "stopped":
            self.plans_paused.inc()
            return
        result = str(plan.result)
        counter = self._finished.get(result)
        if counter is None:
            counter = self._finished[result] = self.plans_finished.labels(result)
        counter.inc()
        self.plan_duration.observe(plan.real_time)

    def committed(self) -> None:
        self.commits.inc()


class _Gauges(Collector):
    """The gauges read at scrape time: worker pools, and the database's view."""

    def __init__(
        self, metrics: Metrics, persistence: PersistencePort, coordinator: Coordinator
    ) -> None:
        self.metrics = metrics
        self.persistence = persistence
        self.coordinator = coordinator

    def describe(self) -> list[Any]:
        return []  # nothing is read at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._pools()
        try:
            yield from self._database()
        except Exception as exc:  # a scrape during an outage: the rest still comes
            log.warning("metrics: cannot read the database: %s", exc)

    def _pools(self) -> Iterator[GaugeMetricFamily]:
        pools = self.metrics.pools
        busy = GaugeMetricFamily(
            "dynflow_pool_busy_workers", "Workers running a step, by queue", labels=["queue"]
        )
        size = GaugeMetricFamily("dynflow_pool_size", "Workers, by queue", labels=["queue"])
        used = GaugeMetricFamily(
            "dynflow_pool_utilisation", "Busy workers / workers, by queue", labels=["queue"]
        )
        waiting = GaugeMetricFamily(
            "dynflow_queue_waiting_steps",
            "Steps handed to this executor's queue, waiting for a free worker",
            labels=["queue"],
        )
        for name, pool in pools.items():
            running = pool.busy()
            busy.add_metric([name], running)
            size.add_metric([name], pool.size)
            used.add_metric([name], running / pool.size)
            waiting.add_metric([name], pool.waiting())
        yield from (busy, size, used, waiting)

    def _database(self) -> Iterator[GaugeMetricFamily]:
        plans = GaugeMetricFamily(
            "dynflow_plans", "Plans in the database, by state", labels=["state"]
        )
        for state, count in self.persistence.find_execution_plan_counts_by_state().items():
            plans.add_metric([str(state)], count)
        yield plans
        envelopes = GaugeMetricFamily(
            "dynflow_envelopes_pending",
            "Envelopes (requests, answers) not yet claimed by their receiving world",
            labels=["receiver"],
        )
        for receiver, count in self.persistence.envelopes.pending().items():
            envelopes.add_metric([receiver], count)
        yield envelopes
        ages = GaugeMetricFamily(
            "dynflow_world_heartbeat_age_seconds",
            "Seconds since each registered world's last heartbeat (database clock)",
            labels=["world", "executor"],
        )
        now = self.coordinator.database_now()
        for world in self.coordinator.find_worlds():
            if world.heartbeat_at is not None:
                age = (now - world.heartbeat_at).total_seconds()
                ages.add_metric([world.id, str(world.executor).lower()], max(age, 0.0))
        yield ages
