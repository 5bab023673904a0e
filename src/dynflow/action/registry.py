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
    """The action class stored as ``name``; raises :class:`UnknownActionClass`.

    A class not seen yet is imported: the longest importable module prefix of its
    name, whose import registers the classes it defines.
    """
    found = _classes.get(name)  # a single lookup: safe without the lock (hot path)
    if found is not None:
        return found
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        with _lock:
            found = _classes.get(name)
        if found is not None:
            return found
        break
    raise UnknownActionClass(name)
