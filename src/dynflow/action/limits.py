"""``Limit``: how many run steps with one key may run at once, or start per window."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynflow.errors import ConfigurationError, DynflowError

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Limit:
    """A limit on the run steps of an action, as a class attribute: ``limits = [...]``.

    ``key`` is a template formatted with the action's input (``"host:{host}"``): steps
    whose keys are equal share the limit, over every world on the database. At most
    ``concurrency`` of them run at once, and at most ``rate`` start in any window of
    ``per`` seconds (a sliding window). Give one of the two, or both.
    """

    key: str
    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None
    #: the input keys the template names (``{host}`` -> ``host``)
    fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(f"Limit({self.key!r}): the key must be a non-empty string")
        try:
            names = [name for _, name, _, _ in _FORMATTER.parse(self.key) if name is not None]
        except ValueError as exc:
            raise ConfigurationError(
                f"Limit({self.key!r}): the key is no template: {exc}"
            ) from None
        if any(not name or not name.split(".")[0].split("[")[0] for name in names):
            raise ConfigurationError(
                f"Limit({self.key!r}): name the input key in each field, e.g. 'host:{{host}}'"
            )
        object.__setattr__(self, "fields", tuple(n.split(".")[0].split("[")[0] for n in names))
        if self.concurrency is None and self.rate is None:
            raise ConfigurationError(
                f"Limit({self.key!r}): give concurrency=N, or rate=N with per=seconds, or both"
            )
        if self.concurrency is not None and not (
            _whole(self.concurrency) and self.concurrency >= 1
        ):
            raise ConfigurationError(
                f"Limit({self.key!r}, concurrency={self.concurrency!r}): it must be a whole "
                "number >= 1"
            )
        if self.rate is not None:
            if not (_whole(self.rate) and self.rate >= 1):
                raise ConfigurationError(
                    f"Limit({self.key!r}, rate={self.rate!r}): it must be a whole number >= 1"
                )
            if self.per is None or not (_number(self.per) and self.per > 0):
                raise ConfigurationError(
                    f"Limit({self.key!r}, rate={self.rate!r}, per={self.per!r}): a rate needs "
                    "per=seconds > 0 (the window it counts starts in)"
                )
        elif self.per is not None:
            raise ConfigurationError(f"Limit({self.key!r}, per={self.per!r}): per needs rate=N")

    def key_for(self, action: str, input: Any) -> str:
        """The key of a step of ``action`` (its class name) with ``input``."""
        if self.fields:
            missing = missing_fields(self, input)
            if missing:
                raise DynflowError(_missing(action, self, missing))
        try:
            return self.key.format(**input) if self.fields else self.key
        except (KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
            raise DynflowError(
                f"{action}: cannot format the limit key {self.key!r} with its input: {exc!r}"
            ) from None


def missing_fields(limit: Limit, input: Any) -> list[str]:
    if not isinstance(input, Mapping):
        return list(limit.fields)
    return [name for name in limit.fields if name not in input]


def check_limits(cls: type, limits: Any, input_model: Any) -> None:
    """Refuse wrong ``limits`` when the action class is defined; with an ``Input``
    model, also a key naming a field the model does not have."""
    if not isinstance(limits, Sequence) or isinstance(limits, str):
        raise ConfigurationError(
            f"{cls.__qualname__}.limits = {limits!r}: use a list of dynflow.Limit(...)"
        )
    for limit in limits:
        if not isinstance(limit, Limit):
            raise ConfigurationError(
                f"{cls.__qualname__}.limits: {limit!r} is not a dynflow.Limit(...)"
            )
        known = getattr(input_model, "model_fields", None)
        if isinstance(known, Mapping):
            missing = [name for name in limit.fields if name not in known]
            if missing:
                raise ConfigurationError(_missing(cls.__qualname__, limit, missing))


def check_planned_input(cls: type, limits: Sequence[Limit], input: Any) -> None:
    """At plan time: every input key a limit's template names is in the input."""
    for limit in limits:
        missing = missing_fields(limit, input)
        if missing:
            # planning failures are reported as "<Action>: <message>"
            raise ConfigurationError(
                _missing(cls.__qualname__, limit, missing)[2 + len(cls.__qualname__) :]
            )


def _missing(action: str, limit: Limit, missing: list[str]) -> str:
    return (
        f"{action}: the limit key {limit.key!r} names input key(s) {', '.join(missing)} "
        "that the action's input does not have"
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
