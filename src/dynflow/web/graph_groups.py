"""Which parts of a run flow the graph draws as one group node.

Alike parts are parts of the same shape (the same action classes in the same flows).
More than :data:`GROUP_MIN` alike branches of a concurrence are one group ("x 200"), and
so are more than :data:`GROUP_MIN` alike parts in a row in a sequence: single steps or
whole sub-flows ("x 500" concurrences of ten). A group expands on demand; an expanded
group of more than :data:`EXPANDED_STEPS` steps is drawn as at most :data:`CHUNKS`
smaller groups (each expanding in turn), so that no expansion draws thousands of nodes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from dynflow.execution_plan.model import Step
from dynflow.flows import Atom, Concurrence, Flow, Sequence, step_ids

#: more alike parts than this (branches, or parts in a row) are drawn as one group node
GROUP_MIN = 12
#: an expanded group of more steps than this is drawn as smaller groups
EXPANDED_STEPS = 500
#: the most groups an expanded group is drawn as
CHUNKS = 20


def short(action_class: str) -> str:
    return action_class.rsplit(".", 1)[-1]


@dataclass
class Leaf:
    step_id: int


@dataclass
class Group:
    id: str
    step_ids: list[int]
    #: the alike parts it stands for
    branches: int
    label: str
    #: "branches" of a concurrence, or "run": parts in a row in a sequence
    kind: Literal["branches", "run"] = "branches"
    #: steps in each part
    each: int = 1

    @property
    def head(self) -> str:
        """What it stands for, in words."""
        where = "in a row" if self.kind == "run" else "branches"
        each = f" of {self.each} steps" if self.each > 1 else ""
        return f"{self.branches} alike {where}{each} ({self.label}): {len(self.step_ids)} steps"


@dataclass
class Seq:
    parts: list[Tree]


@dataclass
class Conc:
    parts: list[Tree]


Tree = Leaf | Group | Seq | Conc


def group_label(ids: Iterable[int], steps: Mapping[int, Step]) -> str:
    names = Counter(short(steps[i].action_class) for i in ids if i in steps)
    return ", ".join(name for name, _ in names.most_common(2))


def member_ranges(ids: Iterable[int]) -> str:
    """``ids`` (sorted) as arithmetic runs ``start:stride:count``, or single ids, space
    separated: the group's steps for the page's script, in a few characters."""
    ordered = sorted(set(ids))
    out: list[str] = []
    index = 0
    while index < len(ordered):
        start = ordered[index]
        if index + 1 == len(ordered):
            out.append(str(start))
            break
        stride = ordered[index + 1] - start
        count = 2
        while (
            index + count < len(ordered)
            and ordered[index + count] - ordered[index + count - 1] == stride
        ):
            count += 1
        if count < 3:  # a pair is shorter as two ids
            out.append(str(start))
            index += 1
            continue
        out.append(f"{start}:{stride}:{count}")
        index += count
    return " ".join(out)


class Grouper:
    """Builds the drawn tree of one flow, with ``expanded`` groups drawn open."""

    def __init__(self, steps: Mapping[int, Step], expanded: Collection[str]) -> None:
        self.steps = steps
        self.expanded = expanded
        self.signatures: dict[int, tuple[object, ...]] = {}

    def signature(self, flow: Flow) -> tuple[object, ...]:
        key = id(flow)
        found = self.signatures.get(key)
        if found is None:
            match flow:
                case Atom(step_id):
                    step = self.steps.get(step_id)
                    found = (step.action_class,) if step else ("?",)
                case Sequence(parts):
                    found = ("seq", *(self.signature(p) for p in parts))
                case Concurrence(parts):
                    found = ("conc", *(self.signature(p) for p in parts))
            self.signatures[key] = found
        return found

    def tree(self, flow: Flow) -> Tree:
        match flow:
            case Atom(step_id):
                return Leaf(step_id)
            case Sequence(parts):
                return Seq([t for run in self._runs(parts) for t in self._alike(run, "r", "run")])
            case Concurrence(parts):
                return Conc(self._branches(parts))
        raise TypeError(flow)  # pragma: no cover

    def _runs(self, parts: list[Flow]) -> Iterator[list[Flow]]:
        run: list[Flow] = []
        for part in parts:
            if run and self.signature(part) != self.signature(run[0]):
                yield run
                run = []
            run.append(part)
        if run:
            yield run

    def _branches(self, parts: list[Flow]) -> list[Tree]:
        buckets: dict[tuple[object, ...], list[Flow]] = {}
        for part in parts:
            buckets.setdefault(self.signature(part), []).append(part)
        drawn: list[Tree] = []
        for part in parts:
            members = buckets[self.signature(part)]
            if len(members) <= GROUP_MIN:
                drawn.append(self.tree(part))
            elif part is members[0]:  # the whole bucket where its first branch is
                drawn += self._alike(members, "g", "branches")
        return drawn

    def _alike(
        self, members: list[Flow], prefix: str, kind: Literal["branches", "run"]
    ) -> list[Tree]:
        if len(members) <= GROUP_MIN:
            return [self.tree(m) for m in members]
        return self._group(members, f"{prefix}{_first(members)}", prefix, kind)

    def _group(
        self, members: list[Flow], group_id: str, prefix: str, kind: Literal["branches", "run"]
    ) -> list[Tree]:
        each = sum(1 for _ in step_ids(members[0]))
        if group_id not in self.expanded:
            ids = [i for m in members for i in step_ids(m)]
            label = group_label(ids, self.steps)
            return [Group(group_id, ids, len(members), label, kind, each)]
        if len(members) * each <= EXPANDED_STEPS:
            return [self.tree(m) for m in members]
        size = max(1, EXPANDED_STEPS // max(each, 1))
        chunks = min(math.ceil(len(members) / size), CHUNKS)
        size = math.ceil(len(members) / chunks)
        drawn: list[Tree] = []
        for start in range(0, len(members), size):
            part = members[start : start + size]
            if len(part) == 1:
                drawn.append(self.tree(part[0]))
            else:
                # its size in the id: the first chunk starts where the whole group does
                drawn += self._group(part, f"{prefix}{_first(part)}-{len(part)}", prefix, kind)
        return drawn


def _first(members: list[Flow]) -> int:
    return next((i for m in members for i in step_ids(m)), 0)


def group_tree(flow: Flow, steps: Mapping[int, Step], expanded: Collection[str] = ()) -> Tree:
    """The flow with its large repetitions replaced by :class:`Group` nodes."""
    return Grouper(steps, expanded).tree(flow)
