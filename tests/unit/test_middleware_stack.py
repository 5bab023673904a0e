"""MiddlewareStack placement and the order in which a chain of middleware is called."""

from __future__ import annotations

from typing import Any

import pytest

from dynflow import ConfigurationError, Middleware
from dynflow.middleware import MiddlewareStack, call_chain


class Recording(Middleware):
    """Records entering and leaving each hook into ``action`` (a list)."""

    def _around(self, hook: str, *args: Any, **kwargs: Any) -> Any:
        log: list[Any] = self.action  # type: ignore[assignment]
        log.append(f"{type(self).__name__} {hook} in")
        result = self.pass_(*args, **kwargs)
        log.append(f"{type(self).__name__} {hook} out")
        return result

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("run", *args, **kwargs)

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        return self._around("plan", *args, **kwargs)


class A(Recording):
    pass


class B(Recording):
    pass


class C(Recording):
    pass


class D(Recording):
    pass


class AddOne(Middleware):
    def run(self, value: int, **kwargs: Any) -> Any:
        return self.pass_(value + 1, **kwargs)


class Double(Middleware):
    def run(self, value: int, **kwargs: Any) -> Any:
        return self.pass_(value * 2, **kwargs)


class ShortCircuit(Middleware):
    def run(self, *args: Any, **kwargs: Any) -> Any:
        return "short"


class NotAMiddleware:
    pass


# -- placement -----------------------------------------------------------------------------
# mypy keeps ``stack.items`` narrowed by an ``==`` assert across ``stack.use(...)``; hence the
# ``comparison-overlap`` ignores below.


def test_use_appends_in_order() -> None:
    stack = MiddlewareStack()
    stack.use(A)
    stack.use(B)
    stack.use(C)
    assert stack.items == (A, B, C)


def test_initial_middleware() -> None:
    assert MiddlewareStack([A, B]).items == (A, B)
    assert MiddlewareStack().items == ()


def test_use_before() -> None:
    stack = MiddlewareStack([A, B])
    stack.use(C, before=B)
    assert stack.items == (A, C, B)
    stack.use(D, before=A)
    assert stack.items == (D, A, C, B)  # type: ignore[comparison-overlap]


def test_use_after() -> None:
    stack = MiddlewareStack([A, B])
    stack.use(C, after=A)
    assert stack.items == (A, C, B)
    stack.use(D, after=B)
    assert stack.items == (A, C, B, D)  # type: ignore[comparison-overlap]


def test_use_replace() -> None:
    stack = MiddlewareStack([A, B, C])
    stack.use(D, replace=B)
    assert stack.items == (A, D, C)


def test_using_again_moves_instead_of_duplicating() -> None:
    stack = MiddlewareStack([A, B, C])
    stack.use(A)
    assert stack.items == (B, C, A)
    stack.use(A, before=B)
    assert stack.items == (A, B, C)  # type: ignore[comparison-overlap]


def test_remove() -> None:
    stack = MiddlewareStack([A, B, C])
    stack.remove(B)
    assert stack.items == (A, C)
    stack.remove(D)  # absent: nothing happens
    assert stack.items == (A, C)


@pytest.mark.parametrize("where", ["before", "after", "replace"])
def test_unknown_anchor_is_an_error(where: str) -> None:
    stack = MiddlewareStack([A])
    with pytest.raises(ConfigurationError, match="B is not in this middleware stack"):
        stack.use(C, **{where: B})
    assert stack.items == (A,)


def test_only_one_anchor_at_a_time() -> None:
    stack = MiddlewareStack([A, B])
    with pytest.raises(ConfigurationError, match="at most one"):
        stack.use(C, before=A, after=B)
    assert stack.items == (A, B)


@pytest.mark.parametrize(
    "bad",
    [NotAMiddleware, A(None, lambda: None), "A"],  # type: ignore[arg-type]
)
def test_only_middleware_classes_are_accepted(bad: Any) -> None:
    stack = MiddlewareStack()
    with pytest.raises(ConfigurationError, match=r"not a dynflow\.Middleware subclass"):
        stack.use(bad)
    assert stack.items == ()


# -- call chain ----------------------------------------------------------------------------


def test_call_chain_calls_outermost_first() -> None:
    log: list[Any] = []

    def innermost(*args: Any, **kwargs: Any) -> str:
        log.append(("inner", args, kwargs))
        return "result"

    result = call_chain([A, B, C], log, "run", innermost, 1, event="e")  # type: ignore[arg-type]
    assert result == "result"
    assert log == [
        "A run in",
        "B run in",
        "C run in",
        ("inner", (1,), {"event": "e"}),
        "C run out",
        "B run out",
        "A run out",
    ]


def test_call_chain_uses_the_named_hook() -> None:
    log: list[Any] = []
    call_chain([A, B], log, "plan", lambda: log.append("inner"))  # type: ignore[arg-type]
    assert log == ["A plan in", "B plan in", "inner", "B plan out", "A plan out"]


def test_default_hooks_pass_through() -> None:
    for hook in ("plan", "run", "finalize", "plan_phase", "run_phase", "finalize_phase"):
        result = call_chain(
            [Middleware, Middleware],
            None,  # type: ignore[arg-type]
            hook,
            lambda *a, **k: (a, k),
            1,
            2,
            x=3,
        )
        assert result == ((1, 2), {"x": 3}), hook


def test_pass_passes_the_arguments_it_is_given() -> None:
    def innermost(value: int) -> int:
        return value

    # (0 + 1) * 2 = 2: AddOne is outermost, so it changes the value first
    assert call_chain([AddOne, Double], None, "run", innermost, 0) == 2  # type: ignore[arg-type]
    # (0 * 2) + 1 = 1
    assert call_chain([Double, AddOne], None, "run", innermost, 0) == 1  # type: ignore[arg-type]


def test_a_middleware_may_stop_the_chain() -> None:
    log: list[Any] = []
    result = call_chain(
        [A, ShortCircuit, B],
        log,  # type: ignore[arg-type]
        "run",
        lambda: log.append("inner"),
    )
    assert result == "short"
    assert log == ["A run in", "A run out"]


def test_middleware_sees_the_action() -> None:
    seen: list[Any] = []

    class Peek(Middleware):
        def run(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(self.action)
            return self.pass_(*args, **kwargs)

    marker = object()
    call_chain([Peek], marker, "run", lambda: None)  # type: ignore[arg-type]
    assert seen == [marker]


def test_empty_chain_calls_the_phase_directly() -> None:
    assert call_chain([], None, "run", lambda x: x * 3, 2) == 6  # type: ignore[arg-type]
