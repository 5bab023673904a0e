"""Execution plan hooks: methods of the entry action called when its plan changes state."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from dynflow.errors import ConfigurationError
from dynflow.execution_plan.states import PlanResult, PlanState

HOOK_KINDS = ("success", "failure", "paused", "stopped")
_ATTRIBUTE = "_dynflow_plan_hooks"

F = TypeVar("F", bound=Callable[..., Any])


def plan_hook(*kinds: str) -> Callable[[F], F]:
    """Mark a method of an entry action to be called as ``method(plan)`` when its plan
    ends ``success`` (stopped with success or warning), ends with a ``failure``
    (error), is ``paused`` or is ``stopped`` (any result).

    Hooks run after the state change is committed, outside the executor's core;
    an exception in a hook is logged and changes nothing.
    """
    unknown = sorted(set(kinds) - set(HOOK_KINDS))
    if not kinds or unknown:
        raise ConfigurationError(
            f"plan_hook needs some of {', '.join(HOOK_KINDS)}; got {', '.join(kinds) or 'none'}"
        )

    def mark(method: F) -> F:
        setattr(method, _ATTRIBUTE, frozenset(kinds))
        return method

    return mark


def kinds_for(state: PlanState, result: PlanResult) -> frozenset[str]:
    kinds = set()
    if state is PlanState.PAUSED:
        kinds.add("paused")
    if state is PlanState.STOPPED:
        kinds.add("stopped")
        if result in (PlanResult.SUCCESS, PlanResult.WARNING):
            kinds.add("success")
    if result is PlanResult.ERROR:
        kinds.add("failure")
    return frozenset(kinds)


_FOUND: weakref.WeakKeyDictionary[type[Any], dict[frozenset[str], tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def hooks_of(cls: type[Any], kinds: frozenset[str]) -> tuple[str, ...]:
    """Names of the methods of ``cls`` marked for any of ``kinds``, in definition order
    (looked up once per class and kinds: this runs whenever a plan stops or pauses)."""
    known = _FOUND.setdefault(cls, {})
    if kinds not in known:
        known[kinds] = _find_hooks(cls, kinds)
    return known[kinds]


def _find_hooks(cls: type[Any], kinds: frozenset[str]) -> tuple[str, ...]:
    names = []
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            marked: frozenset[str] = getattr(value, _ATTRIBUTE, frozenset())
            if marked & kinds and name not in names:
                names.append(name)
    return tuple(names)
