"""Middleware: wrap action phases, per action class or per world.

A middleware overrides any of ``plan``, ``run``, ``finalize``, ``revert`` (around
the user's method) and ``plan_phase``, ``run_phase``, ``finalize_phase``,
``revert_phase`` (around the whole phase, including input resolution and output
checks), and calls
``self.pass_(*args)`` to continue the chain. World middleware wraps class
middleware.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dynflow.errors import ConfigurationError

if TYPE_CHECKING:
    from dynflow.action.base import Action


class Middleware:
    """Base of middleware: every hook passes its arguments on; override the hooks to wrap.

    ``plan``, ``run`` and ``finalize`` wrap the action's own method; ``plan_phase``,
    ``run_phase`` and ``finalize_phase`` wrap the whole phase (input resolution and
    output checks included). Each calls ``self.pass_(...)`` to go on; ``self.action``
    is the action. Register on an action class (``middleware = [Audit]``) or a world
    (``world.middleware.use(Audit, before=Other)``); world middleware wraps class
    middleware, and the first of a list is the outermost.
    """

    def __init__(self, action: Action, next_: Callable[..., Any]) -> None:
        self.action = action
        self._next = next_

    def pass_(self, *args: Any, **kwargs: Any) -> Any:
        """Continue with the next middleware, or the phase itself."""
        return self._next(*args, **kwargs)

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def finalize(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def plan_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def run_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def finalize_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)

    def revert_phase(self, *args: Any, **kwargs: Any) -> Any:
        return self.pass_(*args, **kwargs)


class MiddlewareStack:
    """An ordered list of middleware classes; ``use`` places one relative to others."""

    def __init__(self, middleware: Iterable[type[Middleware]] = ()) -> None:
        self._items: list[type[Middleware]] = list(middleware)
        self._lock = threading.Lock()

    def use(
        self,
        middleware: type[Middleware],
        *,
        before: type[Middleware] | None = None,
        after: type[Middleware] | None = None,
        replace: type[Middleware] | None = None,
    ) -> None:
        if not (isinstance(middleware, type) and issubclass(middleware, Middleware)):
            raise ConfigurationError(f"{middleware!r} is not a dynflow.Middleware subclass")
        if sum(x is not None for x in (before, after, replace)) > 1:
            raise ConfigurationError("give at most one of before=, after=, replace=")
        with self._lock:
            items = [m for m in self._items if m is not middleware]
            anchor = before or after or replace
            if anchor is None:
                items.append(middleware)
            else:
                if anchor not in items:
                    raise ConfigurationError(
                        f"{anchor.__name__} is not in this middleware stack: use it first"
                    )
                index = items.index(anchor)
                if replace is not None:
                    items[index] = middleware
                else:
                    items.insert(index + (after is not None), middleware)
            self._items = items

    def remove(self, middleware: type[Middleware]) -> None:
        with self._lock:
            self._items = [m for m in self._items if m is not middleware]

    @property
    def items(self) -> tuple[type[Middleware], ...]:
        return tuple(self._items)


def call_chain(
    middleware: Sequence[type[Middleware]],
    action: Action,
    hook: str,
    innermost: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Call ``hook`` through ``middleware`` (outermost first), ending in ``innermost``."""
    if not middleware:
        return innermost(*args, **kwargs)
    call = innermost
    for cls in reversed(middleware):
        call = getattr(cls(action, call), hook)
    return call(*args, **kwargs)
