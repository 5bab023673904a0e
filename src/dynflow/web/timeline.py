"""The plan's steps as a Gantt chart drawn by the server (SVG): one row per started step,
a bar from its start to its end, and the waits shaded where they are known: a retry's
backoff (a ``waiting`` step until its next attempt), a ``suspended`` step, and the
periods the plan was paused (from its execution history)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from dynflow.execution_plan.model import ExecutionPlan, Step
from dynflow.web.graph import short

ROW_H = 18
LABEL_W = 230
CHART_W = 860
AXIS_H = 24
PER_PAGE = 200
TICKS = 6


@dataclass
class Timeline:
    svg: Markup
    #: steps drawn (on all pages), steps never started, pages
    started: int
    unstarted: int
    page: int
    pages: int


def _seconds(value: datetime, origin: datetime) -> float:
    return (value - origin).total_seconds()


def paused_periods(plan: ExecutionPlan, now: datetime) -> list[tuple[datetime, datetime]]:
    """(from, to) of each time the plan was paused, from its history."""
    periods: list[tuple[datetime, datetime]] = []
    paused_at: datetime | None = None
    for entry in plan.execution_history:
        if entry.name == "pause execution" and paused_at is None:
            paused_at = entry.time
        elif entry.name == "start execution" and paused_at is not None:
            periods.append((paused_at, entry.time))
            paused_at = None
    if paused_at is not None:
        periods.append((paused_at, plan.ended_at or now))
    return periods


def timeline(plan: ExecutionPlan, now: datetime, link: str, page: int = 1) -> Timeline:
    """The chart of page ``page`` of ``plan``'s started steps, by start time; a row links
    to ``link`` + ``&step=ID``."""
    steps = sorted(
        (s for s in plan.steps.values() if s.started_at is not None),
        key=lambda s: (s.started_at, s.id),
    )
    unstarted = len(plan.steps) - len(steps)
    pages = max(1, math.ceil(len(steps) / PER_PAGE))
    page = min(max(page, 1), pages)
    shown = steps[(page - 1) * PER_PAGE : page * PER_PAGE]
    paused = paused_periods(plan, now)
    origin = min(
        [s.started_at for s in steps if s.started_at] + [p[0] for p in paused], default=now
    )
    if plan.started_at is not None:
        origin = min(origin, plan.started_at)
    # the chart spans the steps' activity (and the pauses between): a plan paused
    # until now shows its pause up to the chart's end, not stretched to now
    ends = [_end(s, now) for s in steps] + [origin] + [start for start, _ in paused]
    ends += [s.next_attempt_at for s in steps if s.next_attempt_at is not None]
    span = max(_seconds(max(ends), origin), 0.001) * 1.08
    chart_end = origin + timedelta(seconds=span)
    paused = [(start, min(end, chart_end)) for start, end in paused]
    scale = CHART_W / span
    height = AXIS_H + ROW_H * len(shown) + 4
    width = LABEL_W + CHART_W + 16
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="timeline of the steps">'
    ]
    for tick in range(TICKS + 1):
        x = LABEL_W + CHART_W * tick / TICKS
        out.append(
            f'<line class="tick" x1="{x:.0f}" y1="{AXIS_H - 6}" x2="{x:.0f}" y2="{height}"/>'
            f'<text class="axis" x="{x:.0f}" y="{AXIS_H - 10}">+{_duration(span * tick / TICKS)}'
            "</text>"
        )
    for start, end in paused:
        x = LABEL_W + _seconds(start, origin) * scale
        w = max(_seconds(end, start) * scale, 1.0)
        out.append(
            f'<rect class="wait paused" x="{x:.1f}" y="{AXIS_H}" width="{w:.1f}" '
            f'height="{height - AXIS_H}"><title>plan paused {_duration(_seconds(end, start))}'
            "</title></rect>"
        )
    for row, step in enumerate(shown):
        out.append(_row(step, row, origin, scale, now, link))
    out.append("</svg>")
    return Timeline(Markup("".join(out)), len(steps), unstarted, page, pages)


def _end(step: Step, now: datetime) -> datetime:
    if step.ended_at is not None:
        return step.ended_at
    return now if step.started_at is None else max(now, step.started_at)


def _row(step: Step, row: int, origin: datetime, scale: float, now: datetime, link: str) -> str:
    assert step.started_at is not None
    y = AXIS_H + row * ROW_H
    start = LABEL_W + _seconds(step.started_at, origin) * scale
    end = _end(step, now)
    width = max(_seconds(end, step.started_at) * scale, 2.0)
    state = str(step.state)
    took = _duration(_seconds(end, step.started_at))
    title = escape(f"{step.id}: {step.action_class} ({step.phase}, {state}) {took}")
    parts = [
        f'<a href="{escape(link)}&amp;step={step.id}#panel" class="row-link">'
        f'<g class="row" data-step="{step.id}"><title>{title}</title>'
        f'<text class="label" x="4" y="{y + 13}">{step.id} '
        f"{escape(short(step.action_class)[:24])} · {step.phase}</text>"
        f'<rect class="bar state-{state}" x="{start:.1f}" y="{y + 3}" width="{width:.1f}" '
        f'height="{ROW_H - 6}" rx="2"/>'
    ]
    if str(step.state) == "suspended":
        parts.append(
            f'<rect class="wait suspended" x="{start:.1f}" y="{y + 3}" width="{width:.1f}" '
            f'height="{ROW_H - 6}"><title>suspended {took}</title></rect>'
        )
    if step.next_attempt_at is not None and str(step.state) == "waiting":
        wait_from = start + width
        wait = max(_seconds(step.next_attempt_at, end) * scale, 2.0)
        parts.append(
            f'<rect class="wait backoff" x="{wait_from:.1f}" y="{y + 3}" width="{wait:.1f}" '
            f'height="{ROW_H - 6}"><title>backoff until the next attempt</title></rect>'
        )
    parts.append("</g></a>")
    return "".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
