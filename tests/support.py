"""Helpers for tests: waiting on conditions without bare sleeps, and gates for steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from dynflow.serialization import to_json_value


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Retry ``check`` until it returns a truthy value (returned) or stops raising."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            problem: BaseException | None = None
        except AssertionError as exc:
            problem = exc
        if time.monotonic() > deadline:
            if problem is not None:
                raise problem
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Gate:
    """Lets a test hold a running step until it says so."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def pass_through(self, timeout: float = 20.0) -> None:
        self.entered.set()
        if not self.opened.wait(timeout):
            raise TimeoutError("gate was never opened")

    def open(self) -> None:
        self.opened.set()


def thaw(value: Any) -> Any:
    """A plain JSON copy of a (read-only) input value."""
    return to_json_value(value, "value")
