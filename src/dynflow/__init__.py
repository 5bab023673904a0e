"""pydynflow: a durable workflow engine. Actions plan, run and finalize; plans survive crashes."""

from dynflow.action.base import Action, PhaseContext, PlannedAction, Rescue
from dynflow.action.cancellable import Cancel, Cancellable
from dynflow.action.polling import Polling
from dynflow.action.suspended import SuspendedAction
from dynflow.action.references import OutputReference
from dynflow.errors import (
    ConfigurationError,
    DynflowError,
    ExecutionError,
    InvalidTransition,
    LockTaken,
    NotFound,
    NotSerializable,
    PersistenceError,
    PlanningFailed,
    UnknownActionClass,
)
from dynflow.execution_plan.model import ActionRecord, ExecutionPlan, HistoryEntry, Step, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.middleware import Middleware
from dynflow.world import Triggered, World

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionRecord",
    "Cancel",
    "Cancellable",
    "ConfigurationError",
    "DynflowError",
    "ExecutionError",
    "ExecutionPlan",
    "HistoryEntry",
    "InvalidTransition",
    "LockTaken",
    "Middleware",
    "NotFound",
    "NotSerializable",
    "OutputReference",
    "PersistenceError",
    "Phase",
    "PhaseContext",
    "PlanResult",
    "PlanState",
    "PlannedAction",
    "PlanningFailed",
    "Polling",
    "Rescue",
    "Step",
    "StepError",
    "StepState",
    "SuspendedAction",
    "Triggered",
    "UnknownActionClass",
    "World",
    "__version__",
]
