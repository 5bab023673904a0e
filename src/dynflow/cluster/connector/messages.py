"""Messages between worlds: typed requests and responses inside envelopes.

Each message is a frozen dataclass; on the wire an envelope is one JSON object
``{"sender_id", "receiver_id", "request_id", "message": {"type": ..., fields}}``.
:func:`decode` validates everything it reads and raises ``ValueError`` on a
malformed envelope (receivers log it and drop it).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeAlias

#: receiver id meaning "any live executor world" (resolved round-robin by the sender)
ANY_EXECUTOR = "AnyExecutor"


# -- requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    execution_plan_id: str


@dataclass(frozen=True)
class Event:
    execution_plan_id: str
    step_id: int
    payload: Any = None
    optional: bool = False


@dataclass(frozen=True)
class Halt:
    execution_plan_id: str
    why: str | None = None  # the reason written into the plan's history (e.g. a deadline)


@dataclass(frozen=True)
class CancelPlan:
    execution_plan_id: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Status:
    execution_plan_id: str


@dataclass(frozen=True)
class LimitsFreed:
    """A limit the receiver's steps may wait for was released: ask again (no answer)."""


# -- responses -------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    pass


@dataclass(frozen=True)
class Done:
    result: Any = None


@dataclass(frozen=True)
class Failed:
    error: str
    error_class: str = "dynflow.errors.ExecutionError"


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class ExecutionStatus:
    execution_plan_id: str
    running: bool


Request: TypeAlias = Execution | Event | Halt | CancelPlan | Ping | Status | LimitsFreed
Response: TypeAlias = Accepted | Done | Failed | Pong | ExecutionStatus
Message: TypeAlias = Request | Response

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Execution,
        Event,
        Halt,
        CancelPlan,
        Ping,
        Status,
        LimitsFreed,
        Accepted,
        Done,
        Failed,
        Pong,
        ExecutionStatus,
    )
}
_FIELD_TYPES: dict[str, tuple[type[Any], ...]] = {
    "execution_plan_id": (str,),
    "step_id": (int,),
    "optional": (bool,),
    "error": (str,),
    "error_class": (str,),
    "running": (bool,),
}


@dataclass(frozen=True)
class Envelope:
    sender_id: str
    receiver_id: str
    request_id: str
    message: Message

    def is_request(self) -> bool:
        return isinstance(self.message, Request)


def encode(envelope: Envelope) -> str:
    # fields hold JSON values already: no deep copy (``asdict`` would copy a whole plan)
    fields_ = {f.name: getattr(envelope.message, f.name) for f in fields(envelope.message)}
    message = {"type": type(envelope.message).__name__, **fields_}
    return json.dumps(
        {
            "sender_id": envelope.sender_id,
            "receiver_id": envelope.receiver_id,
            "request_id": envelope.request_id,
            "message": message,
        },
        separators=(",", ":"),
    )


def decode(text: str | bytes) -> Envelope:
    """Parse and validate one envelope; ``ValueError`` says what is wrong."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"envelope is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("envelope is not a JSON object")
    for key in ("sender_id", "receiver_id", "request_id"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"envelope field {key!r} is missing or not a string")
    body = data.get("message")
    if not isinstance(body, dict):
        raise ValueError("envelope has no message object")
    cls = _TYPES.get(body.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown message type {body.get('type')!r}")
    values = {}
    for field in fields(cls):
        if field.name not in body:
            if field.default is not MISSING:
                continue
            raise ValueError(f"{cls.__name__} message lacks field {field.name!r}")
        value = body[field.name]
        expected = _FIELD_TYPES.get(field.name)
        if expected and not (isinstance(value, expected) and not _bool_as_int(value, expected)):
            raise ValueError(f"{cls.__name__}.{field.name} has the wrong type: {value!r}")
        values[field.name] = value
    return Envelope(data["sender_id"], data["receiver_id"], data["request_id"], cls(**values))


def _bool_as_int(value: Any, expected: tuple[type[Any], ...]) -> bool:
    return isinstance(value, bool) and bool not in expected
