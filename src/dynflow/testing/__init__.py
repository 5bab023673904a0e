"""Testing kit for users' own tests.

- :class:`InThreadWorld`: a world that runs plans in the calling thread with a
  manual clock.
- :func:`create_action`, :func:`plan_action`, :func:`run_action`,
  :func:`finalize_action` and the ``assert_*`` helpers: unit-test one action
  without a database.
- The pytest plugin (installed with the package) offers a ``dynflow_world``
  fixture.
"""

from dynflow.clock import ManualClock
from dynflow.testing.actions import (
    PlannedStub,
    UnitWorld,
    assert_action_planned,
    assert_action_planned_with,
    assert_finalize_phase,
    assert_run_phase,
    create_action,
    finalize_action,
    plan_action,
    planned_actions,
    run_action,
)
from dynflow.testing.world import InThreadWorld

__all__ = [
    "InThreadWorld",
    "ManualClock",
    "PlannedStub",
    "UnitWorld",
    "assert_action_planned",
    "assert_action_planned_with",
    "assert_finalize_phase",
    "assert_run_phase",
    "create_action",
    "finalize_action",
    "plan_action",
    "planned_actions",
    "run_action",
]
