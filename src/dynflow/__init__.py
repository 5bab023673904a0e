"""pydynflow: a durable workflow engine. Actions plan, run and finalize; plans survive crashes."""

from dynflow.action.base import Action, PhaseContext, PlannedAction, Rescue
from dynflow.action.cancellable import Cancel, Cancellable
from dynflow.action.hooks import plan_hook
from dynflow.action.polling import Polling
from dynflow.action.references import OutputReference
from dynflow.action.retry import Retry
from dynflow.action.singleton import Singleton
from dynflow.action.sub_plans import SubPlan, SubPlansFailed, WithSubPlans
from dynflow.action.suspended import SuspendedAction
from dynflow.action.world import ActionWorld
from dynflow.errors import (
    ConfigurationError,
    DataRefused,
    DynflowError,
    ExecutionError,
    InvalidTransition,
    LockTaken,
    NotFound,
    NotSerializable,
    PersistenceError,
    PlanInTransit,
    PlanningFailed,
    StepTimeout,
    UnknownActionClass,
    ValueTooLarge,
)
from dynflow.execution_plan.model import ActionRecord, ExecutionPlan, HistoryEntry, Step, StepError
from dynflow.execution_plan.states import Phase, PlanResult, PlanState, StepState
from dynflow.middleware import Middleware
from dynflow.services.options import Triggered
from dynflow.world import World

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionRecord",
    "ActionWorld",
    "Cancel",
    "Cancellable",
    "ConfigurationError",
    "DataRefused",
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
    "PlanInTransit",
    "PlanResult",
    "PlanState",
    "PlannedAction",
    "PlanningFailed",
    "Polling",
    "Rescue",
    "Retry",
    "Singleton",
    "Step",
    "StepError",
    "StepState",
    "StepTimeout",
    "SubPlan",
    "SubPlansFailed",
    "SuspendedAction",
    "Triggered",
    "UnknownActionClass",
    "ValueTooLarge",
    "WithSubPlans",
    "World",
    "__version__",
    "plan_hook",
]
