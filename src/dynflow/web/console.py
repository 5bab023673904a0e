"""The console's reads and commands over a world, shared by the pages and the JSON API.

Reads take their filters from allow-lists; commands call the world's public methods
and answer an :class:`ActionOutcome`. A command the world refuses raises the
world's :class:`DynflowError` (shown to the user: its message says what to do).
"""

from __future__ import annotations

import math
from concurrent.futures import Future, wait
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynflow.errors import DynflowError, NotFound
from dynflow.execution_plan.states import PlanResult, PlanState
from dynflow.services import review
from dynflow.views import (
    ActionFailures,
    ActionOutcome,
    BulkItem,
    BulkOutcome,
    DelayedView,
    LimitView,
    MinuteCount,
    Overview,
    PlanDetail,
    PlanList,
    WorldView,
    delayed_view,
    limit_view,
    plan_detail,
    plan_summary,
    world_view,
)

if TYPE_CHECKING:
    from dynflow.world import World

MAX_PER_PAGE = 100
#: what the plans list may be sorted by -> the plan column
SORTS = {
    "started_at": "started_at",
    "ended_at": "ended_at",
    "label": "label",
    "state": "state",
    "result": "result",
    "duration": "real_time",
}
DEFAULT_PER_PAGE = 25
#: counts of the plans list stop here: over millions of plans an exact count per state
#: would read them all ("10000+" is shown instead)
COUNT_CAP = 10_000
#: the filters (besides the state) under which each state's count is read from an
#: index alone, (state, label|result|started_at, ...), up to COUNT_CAP
INDEXED_COUNTS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"label"}),
    frozenset({"result"}),
    frozenset({"started_after"}),
    frozenset({"started_before"}),
    frozenset({"started_after", "started_before"}),
)
#: under other filters, the counts read at most this many matching plans (then every
#: count is a lower bound)
FILTERED_COUNT = 2_000
#: the plans list pages through the first this many plans of a list (a deeper OFFSET
#: reads every plan before it): narrow the filters to see further
MAX_DEPTH = 10_000
#: the longest label a filter may name
MAX_LABEL = 255


#: command -> (what is reported when done, the states it applies to, the refusal)
BULK = {
    "resume": ("resumed", (PlanState.PAUSED,), "not paused"),
    "cancel": ("cancelled", (PlanState.RUNNING, PlanState.SCHEDULED), "not running"),
}


class NotAvailable(DynflowError):
    """The world offers no such operation (yet)."""


class PageTooDeep(DynflowError):
    """A page of the plans list past :data:`MAX_DEPTH` plans."""


class Console:
    """Reads and commands over one world."""

    def __init__(self, world: World, *, wait_seconds: float = 2.0, ping_timeout: float = 2.0):
        self.world = world
        #: how long a command waits for its effect before answering "requested"
        self.wait_seconds = wait_seconds
        self.ping_timeout = ping_timeout

    # -- reads ------------------------------------------------------------------

    def plans(
        self,
        *,
        state: PlanState | None = None,
        result: PlanResult | None = None,
        label: str | None = None,
        action_class: str | None = None,
        text: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        key: str | None = None,
        sort: str = "started_at",
        desc: bool = True,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> PlanList:
        if sort not in SORTS:
            raise DynflowError(f"cannot sort plans by {sort!r}: use one of {', '.join(SORTS)}")
        per_page = max(1, min(per_page, MAX_PER_PAGE))
        page = max(1, page)
        deepest = max(1, MAX_DEPTH // per_page)
        if page > deepest:
            raise PageTooDeep(
                f"page {page} is past the first {MAX_DEPTH} plans of this list (page "
                f"{deepest} at {per_page} per page): narrow the filters, e.g. started_before"
            )
        others: dict[str, Any] = {
            name: value
            for name, value in (
                ("result", str(result) if result is not None else None),
                ("label", label[:MAX_LABEL] if label else None),
                ("action_class", action_class[:MAX_LABEL] if action_class else None),
                ("label_contains", text[:MAX_LABEL] if text else None),
                ("started_after", started_after),
                ("started_before", started_before),
                ("key", key),
            )
            if value is not None
        }
        filters = dict(others)
        if state is not None:
            filters["state"] = str(state)
        persistence = self.world.persistence
        if frozenset(others) in INDEXED_COUNTS:  # each state's index entries, up to the cap
            by_state = persistence.find_execution_plan_counts_by_state(others, cap=COUNT_CAP)
            capped = [str(s) for s, n in by_state.items() if n > COUNT_CAP]
        else:  # one pass over (at most FILTERED_COUNT of) the matching plans
            by_state = persistence.find_execution_plan_counts_by_state(others, limit=FILTERED_COUNT)
            partial = sum(by_state.values()) >= FILTERED_COUNT
            capped = [str(s) for s, n in by_state.items() if n > COUNT_CAP or (partial and n)]
        counts = {str(s): min(n, COUNT_CAP) for s, n in by_state.items()}
        total = counts[str(state)] if state is not None else sum(counts.values())
        total_capped = bool(capped) if state is None else str(state) in capped
        pages = min(max(1, math.ceil(total / per_page)), deepest)
        found = persistence.find_execution_plans(
            filters, order_by=SORTS[sort], desc=desc, page=page - 1, per_page=per_page
        )
        classes = persistence.entry_action_classes([p.id for p in found])
        return PlanList(
            items=[plan_summary(p, classes.get(p.id)) for p in found],
            total=total,
            total_capped=total_capped,
            page=page,
            per_page=per_page,
            pages=deepest if total_capped else pages,
            counts=counts,
            capped=capped,
        )

    def plan(self, plan_id: str) -> PlanDetail:
        plan = self.world.persistence.load_execution_plan(plan_id)
        sub_plans = self.world.persistence.find_execution_plans(
            {"caller_execution_plan_id": plan_id}, order_by="started_at", desc=False
        )
        limits = self.world.persistence.find_limits(execution_plan_id=plan_id)
        after, waited_by = self.world.delayed.after(plan_id)
        return plan_detail(plan, sub_plans, limits, after, waited_by)

    def limits(self) -> list[LimitView]:
        """Holders and waiters of every limit key, holders first, waiters in line."""
        return [limit_view(e) for e in self.world.persistence.find_limits()]

    def worlds(self) -> list[WorldView]:
        coordinator = self.world.coordinator
        locks = coordinator.find_locks(lock_class="execution_lock")
        now = coordinator.database_now()
        return [world_view(w, locks, self.world.id, now) for w in coordinator.find_worlds()]

    def delayed(self) -> list[DelayedView]:
        return [delayed_view(d) for d in self.world.delayed.find_delayed_plans()]

    def overview(self) -> Overview:
        """Plans by state, steps finished per minute over the last hour, the actions
        failing most over the last day, and the worlds."""
        persistence = self.world.persistence
        now = self.world.coordinator.database_now().replace(second=0, microsecond=0)
        first = now - timedelta(minutes=59)
        per_minute = persistence.steps_finished_per_minute(first)
        failing = persistence.failed_steps_by_action(now - timedelta(hours=24), 10)
        counts = persistence.find_execution_plan_counts_by_state()
        return Overview(
            counts={str(state): n for state, n in counts.items()},
            steps_per_minute=[
                MinuteCount(minute=m, steps=per_minute.get(m, 0))
                for m in (first + timedelta(minutes=i) for i in range(60))
            ],
            failing_actions=[ActionFailures(action_class=c, failed=n) for c, n in failing],
            worlds=self.worlds(),
        )

    # -- commands ---------------------------------------------------------------

    def _summary(self, plan_id: str) -> ActionOutcome:
        plan = self.world.persistence.load_execution_plan(plan_id)
        return ActionOutcome(ok=True, message="", plan=plan_summary(plan))

    def _settle(self, futures: list[Future[Any]]) -> bool:
        """Wait a little for ``futures``; raise the first failure; True when all done."""
        done, pending = wait(futures, timeout=self.wait_seconds)
        for future in done:
            error = future.exception()
            if error is not None:
                raise error
        return not pending

    def _done(self, plan_id: str, verb: str, finished: bool) -> ActionOutcome:
        outcome = self._summary(plan_id)
        assert outcome.plan is not None
        status = f"{outcome.plan.state}/{outcome.plan.result}"
        if finished:
            outcome.message = f"execution plan {plan_id} {verb}: now {status}"
        else:
            outcome.message = f"execution plan {plan_id}: {verb} requested, now {status}"
        return outcome

    def resume(self, plan_id: str) -> ActionOutcome:
        self._summary(plan_id)  # NotFound first
        return self._done(plan_id, "resumed", self._settle([self.world.resume(plan_id)]))

    def run_now(self, plan_id: str) -> ActionOutcome:
        self._summary(plan_id)
        return self._done(plan_id, "started", self._settle([self.world.execute(plan_id)]))

    def halt(self, plan_id: str) -> ActionOutcome:
        self._summary(plan_id)
        return self._done(plan_id, "halted", self._settle([self.world.halt(plan_id)]))

    def revert(self, plan_id: str) -> ActionOutcome:
        self._summary(plan_id)
        finished = self._settle([self.world.revert(plan_id)])
        outcome = self._done(plan_id, "revert", finished)
        assert outcome.plan is not None
        if finished and outcome.plan.result != "reverted":
            outcome.ok = False
            outcome.message = (
                f"execution plan {plan_id}: revert failed, now {outcome.plan.state}/"
                f"{outcome.plan.result}: resume it to retry the failed revert"
            )
        elif finished:
            outcome.message = f"execution plan {plan_id} reverted"
        return outcome

    def cancel(self, plan_id: str) -> ActionOutcome:
        self._summary(plan_id)
        futures = self.world.cancel(plan_id)
        if not futures:
            outcome = self._summary(plan_id)
            outcome.ok = False
            outcome.message = f"execution plan {plan_id} has no cancellable step running"
            return outcome
        finished = self._settle(futures)
        return self._done(plan_id, "cancelled", finished)

    def approve(self, plan_id: str, who: str) -> ActionOutcome:
        """Review: execute a planned plan, "approved by ``who``" in its history."""
        finished = self._settle([review.approve(self.world, plan_id, who)])
        return self._done(plan_id, f"approved by {who} and executed", finished)

    def reject(self, plan_id: str, who: str) -> ActionOutcome:
        """Review: halt a planned plan, "rejected by ``who``" in its history."""
        finished = self._settle([review.reject(self.world, plan_id, who)])
        return self._done(plan_id, f"rejected by {who} and halted", finished)

    def event(self, plan_id: str, step_id: int, payload: Any) -> ActionOutcome:
        """Deliver ``payload`` to a suspended step."""
        self._summary(plan_id)
        future = self.world.event(plan_id, step_id, payload)
        if not self._settle([future]):
            outcome = self._summary(plan_id)
            outcome.message = f"event to step {step_id} sent; not delivered yet"
            return outcome
        outcome = self._summary(plan_id)
        outcome.message = f"event delivered to step {step_id}"
        return outcome

    def bulk(self, command: str, plan_ids: list[str]) -> BulkOutcome:
        """Resume or cancel several plans; one line per plan of what happened."""
        if command not in BULK:
            raise DynflowError(f"unknown command {command!r}: use one of {', '.join(BULK)}")
        verb, states, refusal = BULK[command]
        items: list[BulkItem] = []
        pending: list[Future[Any]] = []
        for plan_id in dict.fromkeys(plan_ids[:MAX_PER_PAGE]):
            try:
                plan = self.world.persistence.load_execution_plan(plan_id)
            except NotFound:
                items.append(BulkItem(id=plan_id, outcome="not found"))
                continue
            if plan.state not in states:
                items.append(BulkItem(id=plan_id, outcome=refusal, detail=str(plan.state)))
                continue
            try:
                started = (
                    [self.world.resume(plan_id)]
                    if command == "resume"
                    else self.world.cancel(plan_id)
                )
            except DynflowError as exc:
                items.append(BulkItem(id=plan_id, outcome="failed", detail=str(exc)))
                continue
            if not started:
                items.append(BulkItem(id=plan_id, outcome="failed", detail="nothing to cancel"))
                continue
            pending.extend(started)
            items.append(BulkItem(id=plan_id, outcome=verb))
        wait(pending, timeout=self.wait_seconds)
        tally: dict[str, int] = {}
        for item in items:
            tally[item.outcome] = tally.get(item.outcome, 0) + 1
        done = tally.pop(verb, 0)
        parts = [f"{verb} {done}"] + [f"{n} {outcome}" for outcome, n in tally.items()]
        return BulkOutcome(ok=not tally, message=", ".join(parts), items=items)

    def skip(self, plan_id: str, step_id: int) -> ActionOutcome:
        plan = self.world.skip(plan_id, step_id)
        return ActionOutcome(
            ok=True,
            message=f"step {step_id} skipped: resume execution plan {plan_id} to go on",
            plan=plan_summary(plan),
        )

    def check_world(self, world_id: str) -> ActionOutcome:
        if world_id not in {w.id for w in self.world.coordinator.find_worlds()}:
            raise NotFound(f"world {world_id} is not registered")
        future = self.world.ping(world_id, timeout=self.ping_timeout)
        try:
            alive = bool(future.result(timeout=self.ping_timeout + 1))
        except TimeoutError:
            alive = False
        answer = "answered" if alive else f"did not answer within {self.ping_timeout:g}s"
        return ActionOutcome(ok=alive, message=f"world {world_id} {answer}")

    def invalidate_world(self, world_id: str) -> ActionOutcome:
        invalidate = getattr(self.world, "invalidate", None)
        if invalidate is None:
            raise NotAvailable("invalidating a world is not available yet")
        if world_id not in {w.id for w in self.world.coordinator.find_worlds()}:
            raise NotFound(f"world {world_id} is not registered")
        handed_over = int(invalidate(world_id))
        return ActionOutcome(
            ok=True,
            message=f"world {world_id} invalidated: {handed_over} plan(s) handed over",
        )
