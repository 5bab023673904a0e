"""``Retry``: how often, and how long after, a failed ``run`` is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from dynflow.errors import ConfigurationError


@dataclass(frozen=True)
class Retry:
    """Run a failed ``run`` again, as a class attribute of an action: ``retry = Retry(...)``.

    ``attempts`` counts the first run. After the n-th failed attempt whose exception is
    an instance of a class in ``on``, the next one starts ``backoff * factor**(n-1)``
    seconds later (at most ``max_backoff``, then ± ``jitter`` as a fraction of it, so
    that many steps failing together do not all come back at once).
    """

    attempts: int = 1
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    jitter: float = 0.1
    on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        _check(
            isinstance(self.attempts, int) and self.attempts >= 1,
            "attempts",
            self.attempts,
            "a whole number >= 1 (1: no retry)",
        )
        _check(_number(self.backoff) and self.backoff >= 0, "backoff", self.backoff, "seconds >= 0")
        _check(_number(self.factor) and self.factor >= 1, "factor", self.factor, "a number >= 1")
        _check(
            _number(self.max_backoff) and self.max_backoff >= self.backoff,
            "max_backoff",
            self.max_backoff,
            f"seconds >= backoff ({self.backoff!r})",
        )
        _check(
            _number(self.jitter) and 0 <= self.jitter < 1,
            "jitter",
            self.jitter,
            "a fraction in [0, 1)",
        )
        _check(
            isinstance(self.on, tuple)
            and bool(self.on)
            and all(isinstance(c, type) and issubclass(c, BaseException) for c in self.on),
            "on",
            self.on,
            "a non-empty tuple of exception classes, e.g. (ConnectionError,)",
        )

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised ``exc`` is tried again (attempts permitting)."""
        return isinstance(exc, self.on)

    def delay(self, attempt: int, spread: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first run);
        ``spread`` in [0, 1] picks the jitter (random if None)."""
        base = min(self.backoff * self.factor ** (attempt - 1), self.max_backoff)
        spread = random.random() if spread is None else spread
        return max(base * (1 + self.jitter * (2 * spread - 1)), 0.0)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigurationError(f"Retry({name}={value!r}): {name} must be {expected}")


def check_action_options(cls: type, retry: Any, run_timeout: Any) -> None:
    """Refuse a wrong ``retry`` or ``run_timeout`` when the action class is defined,
    not when its first step fails."""
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(
            f"{cls.__qualname__}.retry = {retry!r}: use retry = dynflow.Retry(attempts=...)"
        )
    if run_timeout is not None and not (_number(run_timeout) and run_timeout > 0):
        raise ConfigurationError(
            f"{cls.__qualname__}.run_timeout = {run_timeout!r}: it must be seconds > 0 (or None)"
        )
