"""Action classes by dotted name: classes register themselves, others are imported."""

from __future__ import annotations

import importlib
import threading
import weakref
from typing import TYPE_CHECKING

from dynflow.errors import UnknownActionClass

if TYPE_CHECKING:
    from dynflow.action.base import Action

_classes: weakref.WeakValueDictionary[str, type[Action]] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def class_name(cls: type[object]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[Action]) -> None:
    with _lock:
        _classes[class_name(cls)] = cls


def lookup(name: str) -> type[Action]:
    """The action class stored as ``name``; raises :class:`UnknownActionClass`."""
    from dynflow.action.base import Action

    with _lock:
        found = _classes.get(name)
    if found is not None:
        return found
    # try the longest importable module prefix, then walk attributes
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name, qualname = ".".join(parts[:cut]), ".".join(parts[cut:])
        try:
            obj: object = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in qualname.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            break
        if isinstance(obj, type) and issubclass(obj, Action):
            return obj
        break
    raise UnknownActionClass(name)
