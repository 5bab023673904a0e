"""Output references: placeholders for an action's future output."""

from __future__ import annotations

from typing import Any

from dynflow.serialization import ref_marker


class OutputReference:
    """``planned.output["a"]["b"]``: resolved when the referencing step runs.

    Using one in an action's input also orders that action's run step after the
    referenced action's run step.
    """

    __slots__ = ("action_class", "action_id", "path")

    def __init__(self, action_id: int, action_class: str, path: tuple[str | int, ...] = ()) -> None:
        self.action_id = action_id
        self.action_class = action_class
        self.path = path

    def __getitem__(self, key: str | int) -> OutputReference:
        return OutputReference(self.action_id, self.action_class, (*self.path, key))

    def to_marker(self) -> dict[str, Any]:
        return ref_marker(self.action_id, self.path)

    def __repr__(self) -> str:
        shown = "".join(f"[{k!r}]" for k in self.path)
        return f"<OutputReference {self.action_class}#{self.action_id}.output{shown}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputReference) and (other.action_id, other.path) == (
            self.action_id,
            self.path,
        )

    def __hash__(self) -> int:
        return hash((self.action_id, self.path))

    def __iter__(self) -> Any:
        raise TypeError(
            f"{self!r} is a reference to a future value: pass it (or an item of it) "
            "to plan_self/plan_action instead of reading it while planning"
        )

    def __bool__(self) -> bool:
        raise TypeError(f"{self!r} has no value while planning: it is resolved when the step runs")


def to_marker_or_refuse(value: Any) -> dict[str, Any]:
    """For :func:`dynflow.serialization.to_json_value`: accept only references."""
    if isinstance(value, OutputReference):
        return value.to_marker()
    raise TypeError(value)
