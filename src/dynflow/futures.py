"""Small helpers over :class:`concurrent.futures.Future`, used across the engine."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def resolved(value: T) -> Future[T]:
    """A future already holding ``value``."""
    future: Future[T] = Future()
    future.set_result(value)
    return future


def failed(error: BaseException) -> Future[Any]:
    """A future already failed with ``error``."""
    future: Future[Any] = Future()
    future.set_exception(error)
    return future


def settled(call: Callable[[], T], errors: type[BaseException] = Exception) -> Future[T]:
    """A future already holding ``call()``'s result, or the ``errors`` it raised."""
    future: Future[T] = Future()
    try:
        future.set_result(call())
    except errors as exc:
        future.set_exception(exc)
    return future


def resolve(future: Future[Any], value: Any) -> None:
    """Set ``value`` unless the future is done already."""
    if not future.done():
        future.set_result(value)


def reject(future: Future[Any], error: BaseException) -> None:
    """Set ``error`` unless the future is done already."""
    if not future.done():
        future.set_exception(error)


def then(future: Future[Any], step: Callable[[Any], Any]) -> Future[Any]:
    """A future of ``step(result)`` once ``future`` succeeds (its error otherwise)."""
    chained: Future[Any] = Future()

    def forward(done: Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            chained.set_exception(error)
            return
        try:
            chained.set_result(step(done.result()))
        except Exception as exc:
            chained.set_exception(exc)

    future.add_done_callback(forward)
    return chained
