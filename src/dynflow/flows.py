"""Flows: the shape of the run phase, a tree of sequences and concurrences of steps.

A flow is stored as JSON: an atom is the step id (``int``), a sequence is
``{"sequence": [...]}`` and a concurrence ``{"concurrence": [...]}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Atom:
    step_id: int


@dataclass
class Sequence:
    flows: list[Flow] = field(default_factory=list)


@dataclass
class Concurrence:
    flows: list[Flow] = field(default_factory=list)


Flow: TypeAlias = Atom | Sequence | Concurrence


def step_ids(flow: Flow) -> Iterator[int]:
    """All step ids of ``flow``, depth first, in flow order."""
    match flow:
        case Atom(step_id):
            yield step_id
        case Sequence(flows) | Concurrence(flows):
            for sub in flows:
                yield from step_ids(sub)


def simplify(flow: Flow) -> Flow:
    """Drop empty branches and collapse single-child compounds."""
    match flow:
        case Atom():
            return flow
        case Sequence(flows) | Concurrence(flows):
            kept = [s for s in (simplify(f) for f in flows) if not _empty(s)]
            if len(kept) == 1:
                return kept[0]
            return type(flow)(kept)
    raise TypeError(flow)  # pragma: no cover


def _empty(flow: Flow) -> bool:
    return not isinstance(flow, Atom) and not flow.flows


def to_json(flow: Flow) -> Any:
    match flow:
        case Atom(step_id):
            return step_id
        case Sequence(flows):
            return {"sequence": [to_json(f) for f in flows]}
        case Concurrence(flows):
            return {"concurrence": [to_json(f) for f in flows]}
    raise TypeError(flow)  # pragma: no cover


def from_json(data: Any) -> Flow:
    if isinstance(data, int) and not isinstance(data, bool):
        return Atom(data)
    if isinstance(data, dict) and len(data) == 1:
        ((kind, items),) = data.items()
        if kind in ("sequence", "concurrence") and isinstance(items, list):
            flows = [from_json(item) for item in items]
            return Sequence(flows) if kind == "sequence" else Concurrence(flows)
    raise ValueError(f"not a stored flow: {data!r}")
