"""Cancellable actions: ``world.cancel(plan_id)`` calls their ``cancel()``."""

from __future__ import annotations

from dynflow.action.events import CANCEL


class Cancellable:
    """Mixin for actions that can be cancelled while running or suspended.

    ``world.cancel(plan_id)`` sends ``Cancel`` to each running or suspended step
    of a cancellable action; the engine then calls ``cancel()`` instead of ``run``
    (after a running step suspends), the step ends ``cancelled`` and the plan
    ``stopped``/``cancelled``. A ``cancel()`` that raises fails the step.
    """

    def cancel(self) -> None:
        """Stop the external work. Default: nothing to stop."""


#: the event ``world.cancel`` sends
Cancel = CANCEL
