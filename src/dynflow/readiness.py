"""The director's decision, kept current step by step.

:func:`dynflow.director.decide` walks the whole run flow and reads every step's
state: called after every step, a plan of *n* steps costs O(n) per step. A
:class:`Readiness` is built once per running plan from its shape and its step
states, is told of every state change (:meth:`Readiness.set`, from
``PlanRuntime.set_step``), and answers :meth:`Readiness.decide` with the same
:class:`~dynflow.director.Decision` as ``decide(shape, states)``, at a cost that
depends on what changed, not on the size of the plan.

What it keeps: how many steps are in each state; for each node of the run flow
whether it is done and, for a sequence, which of its children are not done (the
first of them is its *frontier*: the walk of ``decide`` stops there); whether each
node is *visible* (reached by that walk); for each step how many of the steps it
requires are not done; the ready steps (visible, ``pending``, requirements done);
and which finalize steps are not done. A shape it cannot follow (a step twice in
the flows, a state missing) is decided by ``decide`` itself, from the states.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping

from dynflow.director import _ACTIVE, Decision, Outcome, PlanShape, decide
from dynflow.execution_plan.states import DONE_STEP_STATES, StepState
from dynflow.flows import Atom, Concurrence, Flow, Sequence


class _Node:
    __slots__ = (
        "children",
        "done",
        "index",
        "not_done",
        "parent",
        "sequence",
        "step_id",
        "visible",
    )

    def __init__(self, parent: _Node | None, index: int) -> None:
        self.parent = parent
        self.index = index  # among its parent's children
        self.step_id: int | None = None  # an atom's step
        self.children: list[_Node] = []
        self.sequence = False
        #: a sequence's children not done, in order; a concurrence's, unordered
        self.not_done: list[int] = []
        self.done = False
        self.visible = False

    def last_visible(self) -> int:
        """The index of the last child the walk of ``decide`` reaches."""
        if self.sequence and self.not_done:
            return self.not_done[0]
        return len(self.children) - 1


class _Unfollowed(Exception):
    """The shape or the states are not what the incremental decision follows."""


class Readiness:
    """The decision of one plan, kept current: see the module's documentation."""

    def __init__(self, shape: PlanShape, states: Mapping[int, StepState]) -> None:
        self.shape = shape
        self.states: dict[int, StepState] = dict(states)
        self._counts: dict[StepState, int] = dict.fromkeys(StepState, 0)
        for state in self.states.values():
            self._counts[state] += 1
        self._active = sum(self._counts[s] for s in _ACTIVE)
        self._atoms: dict[int, _Node] = {}
        self._order: dict[int, int] = {}  # step id -> its place in the walk
        self._unmet: dict[int, int] = {}  # step id -> required steps not done
        self._dependents: dict[int, list[int]] = {}  # step id -> steps requiring it
        self._finalize: dict[int, int] = {}  # finalize step id -> its index
        self._finalize_not_done: list[int] = []
        self._ready: set[int] = set()
        self._ready_cache: tuple[int, ...] | None = ()
        self._followed = True
        try:
            self._root = self._build(shape.run_flow, None, 0)
            self._build_requires()
            self._build_finalize()
        except _Unfollowed:
            self._followed = False
            return
        self._show(self._root, True)

    # -- building -------------------------------------------------------------------

    def _build(self, flow: Flow, parent: _Node | None, index: int) -> _Node:
        node = _Node(parent, index)
        match flow:
            case Atom(step_id):
                if step_id in self._atoms or step_id not in self.states:
                    raise _Unfollowed
                node.step_id = step_id
                node.done = self.states[step_id] in DONE_STEP_STATES
                self._atoms[step_id] = node
                self._order[step_id] = len(self._order)
                return node
            case Sequence(flows) | Concurrence(flows):
                node.sequence = isinstance(flow, Sequence)
                for i, sub in enumerate(flows):
                    child = self._build(sub, node, i)
                    node.children.append(child)
                    if not child.done:
                        node.not_done.append(i)
                node.done = not node.not_done
                return node
        raise TypeError(flow)  # pragma: no cover

    def _build_requires(self) -> None:
        for step_id in self._atoms:
            required = self.shape.requires.get(step_id, ())
            if any(r not in self.states for r in required):
                raise _Unfollowed
            self._unmet[step_id] = sum(self.states[r] not in DONE_STEP_STATES for r in required)
            for r in required:
                self._dependents.setdefault(r, []).append(step_id)

    def _build_finalize(self) -> None:
        for index, step_id in enumerate(self.shape.finalize_steps):
            if step_id in self._finalize or step_id in self._atoms or step_id not in self.states:
                raise _Unfollowed
            self._finalize[step_id] = index
            if self.states[step_id] not in DONE_STEP_STATES:
                self._finalize_not_done.append(index)

    # -- changes ----------------------------------------------------------------------

    def count(self, *states: StepState) -> int:
        """How many steps are in any of ``states``."""
        return sum(self._counts[s] for s in states)

    def set(self, step_id: int, state: StepState) -> None:
        """Step ``step_id`` is now in ``state``."""
        old = self.states.get(step_id)
        if old is state:
            return
        self.states[step_id] = state
        if old is not None:
            self._counts[old] -= 1
            self._active -= old in _ACTIVE
        self._counts[state] += 1
        self._active += state in _ACTIVE
        if not self._followed:
            return
        done = state in DONE_STEP_STATES
        if (old in DONE_STEP_STATES) != done:
            for dependent in self._dependents.get(step_id, ()):
                self._unmet[dependent] += -1 if done else 1
                self._check(self._atoms[dependent])
            if step_id in self._finalize:
                index = self._finalize[step_id]
                if done:
                    del self._finalize_not_done[bisect_left(self._finalize_not_done, index)]
                else:
                    insort(self._finalize_not_done, index)
            if step_id in self._atoms:
                node = self._atoms[step_id]
                node.done = done
                self._propagate(node)
        if step_id in self._atoms:
            self._check(self._atoms[step_id])

    def _propagate(self, node: _Node) -> None:
        """``node`` was done and is not, or the other way round: its ancestors learn it."""
        while (parent := node.parent) is not None:
            was_done = parent.done
            before = parent.last_visible()
            if node.done:
                del parent.not_done[bisect_left(parent.not_done, node.index)]
            else:
                insort(parent.not_done, node.index)
            parent.done = not parent.not_done
            after = parent.last_visible()
            if parent.visible and before != after:
                shown = after > before
                low, high = (before, after) if shown else (after, before)
                for child in parent.children[low + 1 : high + 1]:
                    self._show(child, shown)
            if parent.done is was_done:
                return
            node = parent

    def _show(self, node: _Node, visible: bool) -> None:
        """Mark ``node`` and what the walk reaches under it visible, or not."""
        stack = [node]
        while stack:
            current = stack.pop()
            current.visible = visible
            if current.step_id is not None:
                self._check(current)
            else:
                stack.extend(current.children[: current.last_visible() + 1])

    def _check(self, atom: _Node) -> None:
        step_id = atom.step_id
        assert step_id is not None
        ready = (
            atom.visible
            and self.states[step_id] is StepState.PENDING
            and not self._unmet.get(step_id, 0)
        )
        if ready != (step_id in self._ready):
            if ready:
                self._ready.add(step_id)
            else:
                self._ready.discard(step_id)
            self._ready_cache = None

    # -- the decision -----------------------------------------------------------------

    def ready(self) -> tuple[int, ...]:
        if self._ready_cache is None:
            self._ready_cache = tuple(sorted(self._ready, key=self._order.__getitem__))
        return self._ready_cache

    def decide(self) -> Decision:
        """What ``decide(shape, states)`` answers for the states as they are now."""
        if not self._followed:
            return decide(self.shape, self.states)
        active = self._active > 0
        if self._counts[StepState.CANCELLED]:
            return Decision(Outcome.CONTINUE if active else Outcome.CANCELLED)
        if self._counts[StepState.ERROR]:
            return Decision(Outcome.CONTINUE if active else Outcome.FAILED)
        if not self._root.done:
            ready = self.ready()
            if ready or active:
                return Decision(Outcome.CONTINUE, ready)
            return Decision(Outcome.STUCK)
        if not self._finalize_not_done:
            return Decision(Outcome.FINISHED)
        step_id = self.shape.finalize_steps[self._finalize_not_done[0]]
        if self.states[step_id] is StepState.PENDING:
            return Decision(Outcome.CONTINUE, (step_id,))
        return Decision(Outcome.CONTINUE)
