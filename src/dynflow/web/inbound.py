"""What other systems send the console over HTTP: plans to trigger and events for
suspended steps (webhooks), and the limit on how big a request body may be.

``create_app(world, auth=..., triggerable=[ActionClass, ...])`` lets ``POST
/api/plans`` trigger the listed classes (and no other); ``POST
/api/plans/{id}/steps/{step_id}/event`` delivers its JSON body as an event. Both
answer 202: the work is accepted, not finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import wait
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from dynflow.action.base import Action
from dynflow.errors import ConfigurationError, NotFound

if TYPE_CHECKING:
    from dynflow.world import World

#: bytes a request body may have by default (``create_app(max_body=...)``)
DEFAULT_MAX_BODY = 1_000_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TriggerRequest(BaseModel):
    """A plan to trigger: the action's class name (as listed, or its dotted name) and
    the arguments of its ``plan``."""

    action: str = Field(max_length=255)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(
        default=None, min_length=1, max_length=255, description="an idempotency key"
    )
    after: list[str] = Field(
        default_factory=list, description="plan ids: it starts once they stopped"
    )
    priority: int = Field(
        default=0,
        ge=-(2**31),
        le=2**31 - 1,
        description="higher starts first among steps waiting in the same queue",
    )
    deadline: float | None = Field(
        default=None, gt=0, description="seconds: halted if not stopped by then"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="str -> str")


class Accepted(BaseModel):
    """The answer to a trigger or an event: accepted, and what happened so far."""

    execution_plan_id: str
    message: str
    delivered: bool | None = None


class Triggers:
    """The action classes that HTTP clients may trigger, by name."""

    def __init__(self, classes: Iterable[type[Action]]) -> None:
        self._by_name: dict[str, type[Action]] = {}
        short: dict[str, list[type[Action]]] = {}
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Action)):
                raise ConfigurationError(f"triggerable: expected Action subclasses, got {cls!r}")
            self._by_name[cls.class_name()] = cls
            short.setdefault(cls.__name__, []).append(cls)
        for name, found in short.items():
            if len(found) == 1:  # a bare class name only where it is unambiguous
                self._by_name.setdefault(name, found[0])

    def classes(self) -> list[type[Action]]:
        """The classes that may be triggered, by dotted name."""
        unique = {cls.class_name(): cls for cls in self._by_name.values()}
        return [unique[name] for name in sorted(unique)]

    def lookup(self, name: str) -> type[Action]:
        cls = self._by_name.get(name)
        if cls is None:
            raise NotFound(
                f"action {name!r} cannot be triggered here: the console triggers only the "
                "classes given to create_app(triggerable=[...])"
            )
        return cls


def trigger(world: World, triggers: Triggers, request: TriggerRequest) -> Accepted:
    cls = triggers.lookup(request.action)
    try:
        options = world.options(
            key=request.key,
            after=request.after,
            priority=request.priority,
            deadline=request.deadline,
            labels=request.labels,
        )
        triggered = options.trigger(cls, *request.args, **request.kwargs)
    except ConfigurationError as exc:  # e.g. the key names a plan that would wait for itself
        raise HTTPException(400, str(exc)) from None
    return Accepted(
        execution_plan_id=triggered.execution_plan_id,
        message=f"execution plan {triggered.execution_plan_id} of {cls.__name__} triggered",
    )


def event(world: World, plan_id: str, step_id: int, payload: Any, wait_seconds: float) -> Accepted:
    """Deliver the event; wait a little to say whether it arrived, and raise why not."""
    world.persistence.load_execution_plan(plan_id)  # NotFound first
    future = world.event(plan_id, step_id, payload)
    done, _ = wait([future], timeout=wait_seconds)
    if done:
        future.result()  # raises why it was not delivered
    return Accepted(
        execution_plan_id=plan_id,
        delivered=bool(done),
        message=f"event for step {step_id} of execution plan {plan_id} "
        + ("delivered" if done else "sent: it is delivered when the step can take it"),
    )


class BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes get 413, refused by their
    Content-Length or, without one, as they arrive."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _refuse(send, self.limit)
            return
        received, too_large = 0, False

        async def counted() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request" and not too_large:
                received += len(message.get("body", b""))
                if received > self.limit:  # the app sees the body end here, cut short
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def answer(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":  # whatever the app made of it
                await _refuse(send, self.limit)

        await self.app(scope, counted, answer)


async def _refuse(send: Send, limit: int) -> None:
    body = f'{{"detail": "request body larger than {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
