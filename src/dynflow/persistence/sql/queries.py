"""The plan-list filter language: equality filters, special filters, ordering."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dynflow.errors import ConfigurationError
from dynflow.execution_plan.states import PlanState
from dynflow.persistence.sql.dialects import Dialect
from dynflow.persistence.tables import actions, execution_plans

PLAN_FILTERS = {
    "state": execution_plans.c.state,
    "result": execution_plans.c.result,
    "label": execution_plans.c.label,
    "id": execution_plans.c.id,
    "caller_execution_plan_id": execution_plans.c.caller_execution_plan_id,
    "caller_action_id": execution_plans.c.caller_action_id,
    "key": execution_plans.c.key,
    "code_version": execution_plans.c.code_version,
    "priority": execution_plans.c.priority,
}
PLAN_ORDER = {
    "started_at": execution_plans.c.started_at,
    "ended_at": execution_plans.c.ended_at,
    "state": execution_plans.c.state,
    "result": execution_plans.c.result,
    "label": execution_plans.c.label,
    "id": execution_plans.c.id,
    "priority": execution_plans.c.priority,
    "deadline_at": execution_plans.c.deadline_at,
    "real_time": execution_plans.c.real_time,
}
#: orders whose ties are broken by the start time before the id
BY_START_TIME = frozenset({"state", "result", "label"})
SPECIAL_FILTERS = (
    "action_class",
    "label_contains",
    "started_after",
    "started_before",
    "deadline_before",
)


def plans_query(
    dialect: Dialect,
    filters: Mapping[str, Any] | None,
    order_by: str,
    desc: bool,
    page: int | None,
    per_page: int | None,
) -> sa.Select[Any]:
    """The plans matching ``filters``, in order, one page of them if asked."""
    if order_by not in PLAN_ORDER:
        raise ConfigurationError(
            f"cannot order plans by {order_by!r}: use one of {', '.join(PLAN_ORDER)}"
        )
    query = sa.select(execution_plans).where(*conditions(filters))
    # ties broken in the same direction (by the start time for a column of few values,
    # then by id), so that an index on those columns reads a page in order either way
    order = ordering(dialect, PLAN_ORDER[order_by], desc)
    if order_by in BY_START_TIME:
        order += ordering(dialect, execution_plans.c.started_at, desc)
    order.append(execution_plans.c.id.desc() if desc else execution_plans.c.id.asc())
    query = query.order_by(*order)
    if per_page is None:
        return query
    if per_page <= 0 or (page is not None and page < 0):
        raise ConfigurationError("page must be >= 0 and per_page > 0")
    if not page:
        return query.limit(per_page)
    # a deeper page: the ids skipped over are read from the index alone (when it holds
    # the filtered and sorted columns), and only the page's rows from the table
    ids = (
        sa.select(execution_plans.c.id)
        .where(*conditions(filters))
        .order_by(*order)
        .limit(per_page)
        .offset(page * per_page)
        .subquery("page_ids")
    )
    return sa.select(execution_plans).join(ids, ids.c.id == execution_plans.c.id).order_by(*order)


def capped_counts_query(filters: Mapping[str, Any] | None, cap: int) -> sa.Select[Any]:
    """One row: for each plan state, how many plans in it match ``filters``, counting
    no further than ``cap + 1`` (each count reads at most that many index entries)."""
    counts = []
    for state in PlanState:
        matching = (
            sa.select(sa.literal(1).label("one"))
            .select_from(execution_plans)
            .where(execution_plans.c.state == str(state), *conditions(filters))
            .limit(cap + 1)
            .subquery()
        )
        counts.append(
            sa.select(sa.func.count()).select_from(matching).scalar_subquery().label(str(state))
        )
    return sa.select(*counts)


def ordering(dialect: Dialect, column: sa.Column[Any], desc: bool) -> list[sa.ColumnElement[Any]]:
    """Order by ``column``, a NULL time (not started, not ended yet) counting as later than
    any other, so that every database returns the same order."""
    if not column.nullable:
        return [column.desc() if desc else column.asc()]
    return dialect.nulls_last(column, desc)


def conditions(filters: Mapping[str, Any] | None) -> list[sa.ColumnElement[bool]]:
    found: list[sa.ColumnElement[bool]] = []
    for name, value in (filters or {}).items():
        special = _special_condition(name, value)
        if special is not None:
            found.append(special)
            continue
        if name not in PLAN_FILTERS:
            known = ", ".join([*PLAN_FILTERS, *SPECIAL_FILTERS])
            raise ConfigurationError(f"cannot filter plans by {name!r}: use one of {known}")
        column = PLAN_FILTERS[name]
        if isinstance(value, list | tuple | set | frozenset):
            found.append(column.in_([_filter_value(column, v) for v in value]))
        elif value is None:
            found.append(column.is_(None))
        else:
            found.append(column == _filter_value(column, value))
    return found


def runnable(code_version: str) -> sa.ColumnElement[bool]:
    """Plans an executor of ``code_version`` runs: of that version, or of none."""
    column = execution_plans.c.code_version
    return sa.or_(column == code_version, column.is_(None))


def _special_condition(name: str, value: Any) -> sa.ColumnElement[bool] | None:
    """Filters beyond equality: entry action class, label text, start time range."""
    if name == "action_class":
        entries = sa.select(actions.c.execution_plan_id).where(
            actions.c.id == 1, actions.c.action_class == str(value)
        )
        return execution_plans.c.id.in_(entries)
    if name == "label_contains":
        text = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return execution_plans.c.label.ilike(f"%{text}%", escape="\\")
    if name == "deadline_before":  # plans with a deadline at or before that time
        when = value if isinstance(value, datetime) else _parse_time(name, value)
        return execution_plans.c.deadline_at <= when
    if name in ("started_after", "started_before"):
        when = value if isinstance(value, datetime) else _parse_time(name, value)
        column = execution_plans.c.started_at
        return column >= when if name == "started_after" else column <= when
    return None


def _parse_time(name: str, value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ConfigurationError(f"filter {name!r} needs an ISO date-time, got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _filter_value(column: sa.ColumnElement[Any], value: Any) -> Any:
    if isinstance(column.type, sa.Integer):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"filter {column.name!r} needs an integer, got {value!r}"
            ) from None
    return str(value)
