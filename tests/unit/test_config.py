"""World settings: what is refused, with a message that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from dynflow import ConfigurationError
from dynflow.config import WorldConfig


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval must be > 0"),
        ({"ping_timeout": -1.0}, "ping_timeout must be > 0"),
        ({"connector_poll_interval": 0.0}, "connector_poll_interval must be > 0"),
        ({"validity_check_interval": -5}, "validity_check_interval must be >= 0"),
        ({"terminate_timeout": -1}, "terminate_timeout must be >= 0"),
        ({"lease": 5.0}, "lease (5.0 s) must be longer than heartbeat_interval (5.0 s)"),
        ({"heartbeat_interval": 2.0, "lease": 1.0}, "at least three heartbeat intervals"),
        ({"heartbeat_interval": "5"}, "heartbeat_interval must be > 0 seconds, got '5'"),
    ],
)
def test_timing_that_makes_a_world_look_dead_is_refused(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        WorldConfig.build("sqlite://", **options)
    assert named in str(refused.value)


def test_the_defaults_and_tight_settings_are_accepted() -> None:
    defaults = WorldConfig.build("sqlite://")
    assert (defaults.heartbeat_interval, defaults.lease, defaults.ping_timeout) == (5.0, 15.0, 2.0)
    tight = WorldConfig.build(
        "sqlite://", heartbeat_interval=0.05, lease=0.2, validity_check_interval=0, ping_timeout=0.1
    )
    assert tight.validity_check_interval == 0
