"""What the plan page shows, built from the stored plan: the header, the error summary,
the selected tab's content and the side panel of one step.

Only the selected tab is rendered, lists are paged, and values over
:data:`VALUE_LIMIT` characters are cut (the full value is one GET away), so that a
plan of thousands of steps or a huge input still makes a small page.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from dynflow.action import registry
from dynflow.errors import DynflowError
from dynflow.execution_plan.model import ActionRecord, ExecutionPlan, Step, StepError
from dynflow.execution_plan.states import PlanState
from dynflow.web import graph, timeline

TABS = (
    ("graph", "Graph"),
    ("timeline", "Timeline"),
    ("steps", "Steps"),
    ("actions", "Actions"),
    ("history", "History"),
    ("sub-plans", "Sub-plans"),
)
TAB_NAMES = tuple(name for name, _ in TABS)
#: fields other trigger options add to the plan (shown when the model has them)
OPTIONAL_FIELDS = (
    ("key", "Key"),
    ("deadline_at", "Deadline"),
    ("code_version", "Code version"),
    ("priority", "Priority"),
)
LIVE_STATES = frozenset({"pending", "scheduled", "planning", "planned", "running"})
#: values longer than this (as pretty JSON) are cut, with a link to the whole value
VALUE_LIMIT = 4096
STEPS_PER_PAGE = 100
ACTIONS_PER_PAGE = 50
SUB_PLANS_PER_PAGE = 25
#: failed steps listed in full in the error summary (the rest are counted)
ERRORS_SHOWN = 20
#: actions whose input the review of a planned plan lists (the rest: the Actions tab)
REVIEW_SHOWN = 100


@dataclass
class Value:
    """A JSON value as shown: pretty text, cut when long."""

    text: str
    size: int
    cut: bool
    url: str


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def value_view(value: Any, url: str) -> Value:
    text = pretty(value)
    if len(text) <= VALUE_LIMIT:
        return Value(text, len(text), False, url)
    return Value(text[:VALUE_LIMIT], len(text), True, url)


@dataclass
class Failed:
    """One failed step of the error summary."""

    step: Step
    error: StepError | None
    max_attempts: int | None


@dataclass
class Panel:
    """The side panel: one step in full."""

    step: Step
    action: ActionRecord
    input: Value
    output: Value
    max_attempts: int | None


@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    pages: int


@dataclass
class SubPlan:
    id: str
    label: str
    state: str
    result: str
    started_at: datetime | None
    duration: float | None
    error: str | None


def _page(items: list[Any], page: int, per_page: int) -> Page:
    pages = max(1, math.ceil(len(items) / per_page))
    page = min(max(page, 1), pages)
    return Page(items[(page - 1) * per_page : page * per_page], len(items), page, pages)


class Retries:
    """``retry.attempts`` of action classes, looked up once per class."""

    def __init__(self) -> None:
        self.known: dict[str, int | None] = {}

    def max_attempts(self, step: Step) -> int | None:
        if str(step.phase) != "run":
            return None
        if step.action_class not in self.known:
            try:
                retry = registry.lookup(step.action_class).retry
            except DynflowError:  # not importable here: show what is stored
                retry = None
            self.known[step.action_class] = None if retry is None else retry.attempts
        return self.known[step.action_class]


@dataclass
class PlanPage:
    plan: ExecutionPlan
    tab: str
    here: str
    live: bool
    optional: list[tuple[str, Any]]
    failed: list[Failed]
    failed_total: int
    panel: Panel | None
    content: dict[str, Any] = field(default_factory=dict)
    #: a planned plan's review: the first actions with a run step, and how many more
    review: list[ActionRecord] = field(default_factory=list)
    review_more: int = 0

    def link(self, **query: Any) -> str:
        """A link to this page with ``query`` (empty values dropped)."""
        params = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{self.here}?{urlencode(params, doseq=True)}" if params else self.here


def value_url(here: str, action_id: int, which: str) -> str:
    return f"{here}/actions/{action_id}/{which}"


def build(
    plan: ExecutionPlan,
    here: str,
    *,
    tab: str = "graph",
    step_id: int | None = None,
    page: int = 1,
    state: str = "",
    expand: Collection[str] = (),
) -> PlanPage:
    """The page of ``plan`` (served at ``here``) with tab ``tab`` selected."""
    retries = Retries()
    steps = plan.steps
    failed_steps = [s for s in steps.values() if str(s.state) == "error"]
    failed_steps += [s for s in steps.values() if str(s.state) == "reverting" and s.error]
    failed_steps += [s for s in steps.values() if str(s.state) == "waiting" and s.error]
    failed = [Failed(s, s.error, retries.max_attempts(s)) for s in failed_steps[:ERRORS_SHOWN]]
    view = PlanPage(
        plan=plan,
        tab=tab if tab in TAB_NAMES else "graph",
        here=here,
        live=str(plan.state) in LIVE_STATES,
        optional=[
            (title, value)
            for name, title in OPTIONAL_FIELDS
            if (value := getattr(plan, name, None)) not in (None, "")
        ],
        failed=failed,
        failed_total=len(failed_steps),
        panel=_panel(plan, here, step_id, retries),
    )
    if plan.state is PlanState.PLANNED:
        runnable = [a for a in plan.actions if a.run_step_id is not None]
        view.review = runnable[:REVIEW_SHOWN]
        view.review_more = len(runnable) - len(view.review)
    now = datetime.now(UTC)
    keep_step = {"step": step_id} if step_id is not None else {}
    if view.tab == "graph":
        drawn = graph.layout(plan, expand)
        view.content["graph"] = graph.svg(plan, drawn, f"{here}?tab=graph", expand)
        view.content["legend"] = graph.LEGEND
        view.content["expanded"] = sorted(expand)
        view.content["nodes"] = sum(1 for n in drawn.nodes if n.kind != "join")
    elif view.tab == "timeline":
        view.content["timeline"] = timeline.timeline(plan, now, f"{here}?tab=timeline", page)
    elif view.tab == "steps":
        ordered = [steps[i] for i in sorted(steps)]
        counts = Counter(str(s.state) for s in ordered)
        shown = [s for s in ordered if not state or str(s.state) == state]
        view.content["counts"] = sorted(counts.items())
        view.content["steps"] = _page(shown, page, STEPS_PER_PAGE)
        view.content["attempts"] = {s.id: retries.max_attempts(s) for s in shown}
        view.content["by_class"] = _by_class(ordered)
    elif view.tab == "actions":
        actions = _page(plan.actions, page, ACTIONS_PER_PAGE)
        view.content["actions"] = actions
        view.content["values"] = {
            a.id: (
                value_view(a.input, value_url(here, a.id, "input")),
                value_view(a.output, value_url(here, a.id, "output")),
            )
            for a in actions.items
        }
    view.content["keep_step"] = keep_step
    return view


def _by_class(steps: list[Step]) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """(action class, steps, [(state, count)]) for the 20 classes with most steps."""
    classes: dict[str, Counter[str]] = {}
    for step in steps:
        classes.setdefault(step.action_class, Counter())[str(step.state)] += 1
    ranked = sorted(classes.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    return [(name, sum(c.values()), sorted(c.items())) for name, c in ranked[:20]]


def _panel(plan: ExecutionPlan, here: str, step_id: int | None, retries: Retries) -> Panel | None:
    if step_id is None or step_id not in plan.steps:
        return None
    step = plan.steps[step_id]
    action = plan.action(step.action_id)
    return Panel(
        step=step,
        action=action,
        input=value_view(action.input, value_url(here, action.id, "input")),
        output=value_view(action.output, value_url(here, action.id, "output")),
        max_attempts=retries.max_attempts(step),
    )


def sub_plan(plan: ExecutionPlan) -> SubPlan:
    duration = None
    if plan.started_at is not None:
        duration = plan.real_time
    error = None
    if str(plan.result) == "error" or plan.state is PlanState.PAUSED:
        error = next((str(e) for e in plan.errors), None)
    return SubPlan(
        plan.id,
        plan.label,
        str(plan.state),
        str(plan.result),
        plan.started_at,
        duration,
        error,
    )
