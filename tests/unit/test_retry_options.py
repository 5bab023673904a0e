"""``Retry`` and ``run_timeout``: validated when made and when the action is defined,
and the backoff each attempt waits."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dynflow import Action, ConfigurationError, Retry


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"attempts": 0}, "attempts=0"),
        ({"attempts": 2.5}, "attempts=2.5"),
        ({"backoff": -1.0}, "backoff=-1.0"),
        ({"factor": 0.5}, "factor=0.5"),
        ({"backoff": 10.0, "max_backoff": 5.0}, "max_backoff=5.0"),
        ({"jitter": 1.0}, "jitter=1.0"),
        ({"jitter": -0.1}, "jitter=-0.1"),
        ({"on": ConnectionError}, "on=<class 'ConnectionError'>"),
        ({"on": (ConnectionError, "timeout")}, "on=(<class 'ConnectionError'>, 'timeout')"),
        ({"on": ()}, "on=()"),
    ],
)
def test_a_bad_retry_is_refused_naming_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(f"Retry({named})")):
        Retry(**options)


def test_a_retry_that_is_not_a_retry_is_refused_naming_the_action() -> None:
    with pytest.raises(ConfigurationError, match=r"CallInventory\.retry = 3: use retry = dynflow"):

        class CallInventory(Action):
            retry = 3  # type: ignore[assignment]


@pytest.mark.parametrize("seconds", [0, -1.0, "30"])
def test_a_bad_run_timeout_is_refused_naming_the_action(seconds: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"SlowCall\.run_timeout = "):

        class SlowCall(Action):
            run_timeout = seconds


def test_the_backoff_grows_by_factor_up_to_max_backoff() -> None:
    retry = Retry(attempts=10, backoff=1.0, factor=2.0, max_backoff=5.0, jitter=0.0)
    assert [retry.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_spreads_the_backoff_by_its_fraction() -> None:
    retry = Retry(attempts=3, backoff=10.0, jitter=0.2)
    assert retry.delay(1, spread=0.0) == pytest.approx(8.0)
    assert retry.delay(1, spread=1.0) == pytest.approx(12.0)
    assert all(8.0 <= retry.delay(1) <= 12.0 for _ in range(200))


def test_on_decides_which_errors_are_retried() -> None:
    retry = Retry(attempts=2, on=(ConnectionError, TimeoutError))
    assert retry.retries(ConnectionRefusedError())  # a subclass counts
    assert retry.retries(TimeoutError())
    assert not retry.retries(ValueError())
    assert Retry().retries(ValueError())  # default: any Exception
