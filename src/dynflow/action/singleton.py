"""Singleton actions: at most one unfinished plan per action class at a time."""

from __future__ import annotations

#: coordinator lock class; the lock id is the action class name, the owner the plan id
SINGLETON_LOCK = "singleton_action"


class Singleton:
    """Mixin: while a plan with this action is not stopped (running or paused), planning
    another one fails with ``dynflow.PlanningFailed`` naming the holding plan. The
    lock is released when that plan stops."""
