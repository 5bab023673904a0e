"""pydynflow: a durable workflow engine. Actions plan, run and finalize; plans survive crashes.

Names are imported on first use (``from dynflow import World`` imports the world,
SQLAlchemy and the rest; ``import dynflow.cli.main`` alone does not).
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from dynflow.action.base import Action, PhaseContext, PlannedAction, Rescue
    from dynflow.action.cancellable import Cancel, Cancellable
    from dynflow.action.hooks import plan_hook
    from dynflow.action.limits import Limit
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
    from dynflow.execution_plan.model import (
        ActionRecord,
        ExecutionPlan,
        HistoryEntry,
        Step,
        StepError,
    )
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
    "Limit",
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

#: public name -> the module that defines it
_EXPORTS = {
    "Action": "dynflow.action.base",
    "PhaseContext": "dynflow.action.base",
    "PlannedAction": "dynflow.action.base",
    "Rescue": "dynflow.action.base",
    "Cancel": "dynflow.action.cancellable",
    "Cancellable": "dynflow.action.cancellable",
    "plan_hook": "dynflow.action.hooks",
    "Limit": "dynflow.action.limits",
    "Polling": "dynflow.action.polling",
    "OutputReference": "dynflow.action.references",
    "Retry": "dynflow.action.retry",
    "Singleton": "dynflow.action.singleton",
    "SubPlan": "dynflow.action.sub_plans",
    "SubPlansFailed": "dynflow.action.sub_plans",
    "WithSubPlans": "dynflow.action.sub_plans",
    "SuspendedAction": "dynflow.action.suspended",
    "ActionWorld": "dynflow.action.world",
    "ConfigurationError": "dynflow.errors",
    "DataRefused": "dynflow.errors",
    "DynflowError": "dynflow.errors",
    "ExecutionError": "dynflow.errors",
    "InvalidTransition": "dynflow.errors",
    "LockTaken": "dynflow.errors",
    "NotFound": "dynflow.errors",
    "NotSerializable": "dynflow.errors",
    "PersistenceError": "dynflow.errors",
    "PlanInTransit": "dynflow.errors",
    "PlanningFailed": "dynflow.errors",
    "StepTimeout": "dynflow.errors",
    "UnknownActionClass": "dynflow.errors",
    "ValueTooLarge": "dynflow.errors",
    "ActionRecord": "dynflow.execution_plan.model",
    "ExecutionPlan": "dynflow.execution_plan.model",
    "HistoryEntry": "dynflow.execution_plan.model",
    "Step": "dynflow.execution_plan.model",
    "StepError": "dynflow.execution_plan.model",
    "Phase": "dynflow.execution_plan.states",
    "PlanResult": "dynflow.execution_plan.states",
    "PlanState": "dynflow.execution_plan.states",
    "StepState": "dynflow.execution_plan.states",
    "Middleware": "dynflow.middleware",
    "Triggered": "dynflow.services.options",
    "World": "dynflow.world",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
