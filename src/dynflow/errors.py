"""The error tree of the engine.

Every error raised by the engine derives from :class:`DynflowError`::

    DynflowError
    ├── ConfigurationError      a world or component was configured wrongly
    ├── PersistenceError        the database could not be reached or used
    ├── DataRefused             the database refused a value (trying again cannot help)
    ├── ValueTooLarge           an input, output or event payload is over the size limit
    ├── NotFound                a plan, step or record does not exist
    ├── InvalidTransition       a state change the state machine forbids
    ├── PlanningFailed          an action's plan phase raised; the plan is kept
    ├── ExecutionError          a request about a plan's execution was refused
    │   └── PlanInTransit       the plan is between executors: retry shortly
    ├── UnknownActionClass      a stored action names a class this process cannot import
    ├── NotSerializable         an input, output or payload value is not JSON
    ├── LockTaken               a coordinator lock is held by someone else
    └── KeyTaken                a plan with this idempotency key exists already

Errors raised by user code inside a step never escape: they are stored on the
step as a :class:`dynflow.StepError` value (class, message, backtrace).
"""

from __future__ import annotations


class DynflowError(Exception):
    """Root of all errors raised by the engine."""


class ConfigurationError(DynflowError):
    """A world or one of its components was configured wrongly."""


class PersistenceError(DynflowError):
    """The database could not be reached or used."""


class DataRefused(DynflowError):
    """The database refused a value it was given (e.g. text too long for its column).

    Unlike :class:`PersistenceError` this is no outage: the same write fails again.
    """


class ValueTooLarge(DynflowError):
    """An action's input or output, or an event payload, is larger as JSON than the
    world's ``max_value_bytes``."""


class NotFound(DynflowError):
    """A plan, step or record does not exist."""


class InvalidTransition(DynflowError):
    """A state change that the state machine does not allow."""


class ExecutionError(DynflowError):
    """A request about a plan's execution was refused (e.g. it is already running)."""


class PlanInTransit(ExecutionError):
    """The plan is between executors: its executor is terminating or died and another
    one has not taken it yet, or a client world's request to execute it is on its way.
    Retry shortly; ``world.event`` retries by itself for a while (``EVENT_RETRY_FOR``
    seconds in :mod:`dynflow.services.control`) before failing with this error."""


class UnknownActionClass(DynflowError):
    """A stored action names a class that cannot be imported in this process."""

    def __init__(self, class_name: str) -> None:
        super().__init__(
            f"unknown action class {class_name}: is the module imported in this executor?"
        )
        self.class_name = class_name


class NotSerializable(DynflowError):
    """A value that must be stored as JSON is not JSON-serialisable."""


class LockTaken(DynflowError):
    """A coordinator lock is already held by another owner."""

    def __init__(self, lock_class: str, lock_id: str, owner_id: str | None) -> None:
        super().__init__(f"{lock_class} lock {lock_id!r} is held by {owner_id or 'another owner'}")
        self.lock_class = lock_class
        self.lock_id = lock_id
        self.owner_id = owner_id


class PlanningFailed(DynflowError):
    """An action's plan phase failed. The plan is kept, ``stopped``/``error``."""

    def __init__(self, execution_plan_id: str, message: str) -> None:
        super().__init__(f"planning of execution plan {execution_plan_id} failed: {message}")
        self.execution_plan_id = execution_plan_id
        self.reason = message


class StepTimeout(DynflowError):
    """An attempt of a step's ``run`` took longer than its action's ``run_timeout``.

    It is the step's error like any other: list it in ``Retry.on`` to retry a timed-out
    attempt."""


class KeyTaken(DynflowError):
    """A plan with this idempotency key exists already: nothing new was stored.
    ``world.options(key=...)`` answers with the existing plan instead."""

    def __init__(self, key: str, execution_plan_id: str) -> None:
        super().__init__(f"execution plan {execution_plan_id} has key {key!r} already")
        self.key = key
        self.execution_plan_id = execution_plan_id
