"""The run flow as a graph drawn by the server: a layered layout of the flow tree as SVG.

A sequence lays its parts out left to right, a concurrence stacks its branches. Edges
join the exits of one part of a sequence to the entries of the next (through a small
join point when both sides have several), and dashed edges show output references
(a step that waits for another's output). Alike branches of a concurrence and alike
parts in a row of a sequence are grouped (:mod:`dynflow.web.graph_groups`): a group node
("x 200") shows its steps' state counts and a link expands it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from urllib.parse import quote

from markupsafe import Markup, escape

from dynflow.execution_plan.model import ExecutionPlan, Step
from dynflow.execution_plan.shape import shape_of
from dynflow.web.graph_groups import (
    GROUP_MIN,
    Conc,
    Group,
    Leaf,
    Seq,
    Tree,
    group_tree,
    member_ranges,
    short,
)

__all__ = ["GROUP_MIN", "group_tree", "layout", "short", "svg"]

NODE_W, NODE_H = 170, 40
GAP_X, GAP_Y = 44, 12
JOIN_R = 5
PAD = 12
#: the order in which a group's colour is chosen: the first state any member is in
STATE_PRIORITY = (
    "error",
    "running",
    "reverting",
    "suspended",
    "waiting",
    "skipping",
    "cancelled",
    "reverted",
    "pending",
    "skipped",
    "success",
)
LEGEND = (
    "pending",
    "running",
    "suspended",
    "waiting",
    "success",
    "skipped",
    "error",
    "cancelled",
    "reverting",
    "reverted",
)


@dataclass
class Node:
    id: str
    kind: str  # "step", "group" or "join"
    x: float
    y: float
    step_id: int | None = None
    group: Group | None = None


@dataclass
class Layout:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, kind)
    width: float = 0.0
    height: float = 0.0
    groups: list[Group] = field(default_factory=list)


def _entries(tree: Tree) -> int:
    match tree:
        case Leaf() | Group():
            return 1
        case Seq(parts):
            return _entries(parts[0]) if parts else 0
        case Conc(parts):
            return sum(_entries(p) for p in parts)
    raise TypeError(tree)  # pragma: no cover


class _Placer:
    def __init__(self) -> None:
        self.layout = Layout()
        self.sizes: dict[int, tuple[float, float]] = {}

    def size(self, tree: Tree) -> tuple[float, float]:
        key = id(tree)
        if key in self.sizes:
            return self.sizes[key]
        match tree:
            case Leaf() | Group():
                found = (float(NODE_W), float(NODE_H))
            case Seq(parts):
                sizes = [self.size(p) for p in parts]
                width = sum(w for w, _ in sizes) + GAP_X * max(len(parts) - 1, 0)
                width += 2 * GAP_X * self._joins(parts)
                found = (width, max((h for _, h in sizes), default=0.0))
            case Conc(parts):
                sizes = [self.size(p) for p in parts]
                height = sum(h for _, h in sizes) + GAP_Y * max(len(parts) - 1, 0)
                found = (max((w for w, _ in sizes), default=0.0), height)
        self.sizes[key] = found
        return found

    @staticmethod
    def _needs_join(before: Tree, after: Tree) -> bool:
        return _exits(before) > 1 and _entries(after) > 1

    def _joins(self, parts: list[Tree]) -> int:
        return sum(self._needs_join(a, b) for a, b in pairwise(parts))

    def place(self, tree: Tree, x: float, y: float) -> tuple[list[str], list[str]]:
        """Put ``tree``'s nodes with its top left at (x, y); its entry and exit node ids."""
        match tree:
            case Leaf(step_id):
                node = Node(f"s{step_id}", "step", x, y, step_id=step_id)
                self.layout.nodes.append(node)
                return [node.id], [node.id]
            case Group():
                node = Node(tree.id, "group", x, y, group=tree)
                self.layout.nodes.append(node)
                self.layout.groups.append(tree)
                return [node.id], [node.id]
            case Seq(parts):
                entries: list[str] = []
                exits: list[str] = []
                cx = x
                for index, part in enumerate(parts):
                    w, _ = self.size(part)
                    if index and self._needs_join(parts[index - 1], part):
                        join_y = y + NODE_H / 2
                        join = Node(f"j{len(self.layout.nodes)}", "join", cx + GAP_X / 2, join_y)
                        self.layout.nodes.append(join)
                        self._connect(exits, [join.id])
                        exits = [join.id]
                        cx += 2 * GAP_X
                    part_entries, part_exits = self.place(part, cx, y)
                    if index:
                        self._connect(exits, part_entries)
                    else:
                        entries = part_entries
                    exits = part_exits
                    cx += w + GAP_X
                return entries, exits
            case Conc(parts):
                entries, exits = [], []
                cy = y
                for part in parts:
                    part_entries, part_exits = self.place(part, x, cy)
                    entries += part_entries
                    exits += part_exits
                    cy += self.size(part)[1] + GAP_Y
                return entries, exits
        raise TypeError(tree)  # pragma: no cover

    def _connect(self, sources: list[str], targets: list[str]) -> None:
        for source in sources:
            for target in targets:
                self.layout.edges.append((source, target, "flow"))


def _exits(tree: Tree) -> int:
    match tree:
        case Leaf() | Group():
            return 1
        case Seq(parts):
            return _exits(parts[-1]) if parts else 0
        case Conc(parts):
            return sum(_exits(p) for p in parts)
    raise TypeError(tree)  # pragma: no cover


def layout(plan: ExecutionPlan, expanded: Collection[str] = ()) -> Layout:
    """Nodes with positions and edges of ``plan``'s run flow (empty without one)."""
    if plan.run_flow is None:
        return Layout()
    steps = plan.steps
    tree = group_tree(plan.run_flow, steps, expanded)
    placer = _Placer()
    width, height = placer.size(tree)
    placer.place(tree, PAD, PAD)
    found = placer.layout
    found.width, found.height = width + 2 * PAD, height + 2 * PAD
    drawn_as: dict[int, str] = {}
    for node in found.nodes:
        if node.step_id is not None:
            drawn_as[node.step_id] = node.id
        elif node.group is not None:
            for step_id in node.group.step_ids:
                drawn_as[step_id] = node.id
    seen: set[tuple[str, str]] = set()
    for step_id, needed in sorted(shape_of(plan).requires.items()):
        for source_step in sorted(needed):
            pair = (drawn_as.get(source_step, ""), drawn_as.get(step_id, ""))
            if pair[0] and pair[1] and pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                found.edges.append((pair[0], pair[1], "ref"))
    return found


def group_state(ids: Iterable[int], steps: Mapping[int, Step]) -> tuple[str, Counter[str]]:
    counts = Counter(str(steps[i].state) for i in ids if i in steps)
    state = next((s for s in STATE_PRIORITY if counts.get(s)), "pending")
    return state, counts


def svg(plan: ExecutionPlan, drawn: Layout, link: str, expanded: Collection[str] = ()) -> Markup:
    """``drawn`` as an SVG element; a node links to ``link`` + ``&step=ID`` (a group to
    ``&expand=ID``)."""
    steps = plan.steps
    where = {n.id: n for n in drawn.nodes}
    out = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{drawn.width:.0f}" '
        f'height="{drawn.height:.0f}" viewBox="0 0 {drawn.width:.0f} {drawn.height:.0f}" '
        f'role="group" aria-label="run flow graph" data-legend="{" ".join(LEGEND)}" '
        f'data-priority="{" ".join(STATE_PRIORITY)}">',
        '<g class="edges">',
    ]
    for source, target, kind in drawn.edges:
        a, b = where[source], where[target]
        x1, y1 = _anchor(a, right=True)
        x2, y2 = _anchor(b, right=False)
        bend = max((x2 - x1) / 2, 16.0)
        out.append(
            f'<path class="edge {kind}" data-from="{source}" data-to="{target}" '
            f'd="M{x1:.0f} {y1:.0f}C{x1 + bend:.0f} {y1:.0f} {x2 - bend:.0f} {y2:.0f} '
            f'{x2:.0f} {y2:.0f}"/>'
        )
    out.append('</g><g class="nodes">')
    keep = "".join(f"&expand={quote(e)}" for e in sorted(expanded))
    for node in drawn.nodes:
        if node.kind == "join":
            out.append(f'<circle class="join" cx="{node.x:.0f}" cy="{node.y:.0f}" r="{JOIN_R}"/>')
        elif node.step_id is not None:
            out.append(_step_node(node, steps.get(node.step_id), f"{link}{keep}"))
        elif node.group is not None:
            out.append(_group_node(node, node.group, steps, f"{link}{keep}"))
    out.append("</g></svg>")
    return Markup("".join(out))


def _anchor(node: Node, *, right: bool) -> tuple[float, float]:
    if node.kind == "join":
        return node.x + (JOIN_R if right else -JOIN_R), node.y
    return node.x + (NODE_W if right else 0), node.y + NODE_H / 2


def _clip(text: str, size: int = 20) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _step_node(node: Node, step: Step | None, link: str) -> str:
    state = str(step.state) if step else "pending"
    name = short(step.action_class) if step else "?"
    title = escape(f"{node.step_id}: {step.action_class if step else '?'} ({state})")
    return (
        f'<a href="{escape(link)}&amp;step={node.step_id}#panel" class="node-link">'
        f'<g class="node state-{state}" data-step="{node.step_id}"><title>{title}</title>'
        f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
        f'<text x="{node.x + 8:.0f}" y="{node.y + 16:.0f}">{node.step_id} '
        f"{escape(_clip(name))}</text>"
        f'<text class="sub" x="{node.x + 8:.0f}" y="{node.y + 32:.0f}" data-state-text>'
        f"{state}</text></g></a>"
    )


def _group_node(node: Node, group: Group, steps: Mapping[int, Step], link: str) -> str:
    state, counts = group_state(group.step_ids, steps)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    # the page's script recounts the states of data-members as they change
    out = [
        f'<a href="{escape(link)}&amp;expand={group.id}" class="node-link">'
        f'<g class="node group state-{state}" data-group="{group.id}" '
        f'data-members="{member_ranges(group.step_ids)}" data-head="{escape(group.head)}" '
        f'data-counts="{summary}"><title>{escape(group.head)} ({summary})</title>'
        f'<rect class="stack" x="{node.x + 4:.0f}" y="{node.y - 4:.0f}" width="{NODE_W}" '
        f'height="{NODE_H}" rx="5"/>'
        f'<rect x="{node.x:.0f}" y="{node.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5"/>'
        f'<text x="{node.x + 8:.0f}" y="{node.y + 16:.0f}">&#215; {group.branches} '
        f"{escape(_clip(group.label, 16))}</text>"
    ]
    out.append(
        f'<rect class="track" x="{node.x + 7.5:.1f}" y="{node.y + 25.5:.1f}" '
        f'width="{NODE_W - 15}" height="9"/>'
    )
    x = node.x + 8
    total = sum(counts.values()) or 1
    for name in LEGEND:
        width = (NODE_W - 16) * counts.get(name, 0) / total
        if width:
            out.append(
                f'<rect class="bar state-{name}" x="{x:.1f}" y="{node.y + 26:.0f}" '
                f'width="{width:.1f}" height="8"/>'
            )
            x += width
    out.append("</g></a>")
    return "".join(out)
