"""A world declared dead leaves no limit behind: invalidation releases what it held
and drops its waits; the world that recovers its plans asks for the limits again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pytest

from dynflow import Action, ExecutionPlan, Limit, PlanResult, StepState, World
from tests.support import Box, eventually, registered_box

MakeWorld = Callable[..., World]
BOXES: dict[str, Box] = {}


@pytest.fixture
def box() -> Iterator[Box]:
    yield from registered_box(Box, BOXES)


class Exclusive(Action):
    idempotent = True  # interrupted by the death of its world: runs again elsewhere
    limits = [Limit("exclusive:{box}", concurrency=1)]

    def plan(self, box: str, name: str) -> None:
        self.plan_self(box=box, name=name)

    def run(self, event: object = None) -> None:
        box = BOXES[self.input["box"]]
        with box.lock:
            box.runs[self.input["name"]] += 1
            first = box.runs[self.input["name"]] == 1
        hook = box.hooks.get(self.input["name"])
        if first and hook is not None:
            hook(self)


def test_invalidation_releases_a_dead_worlds_limits_and_its_plans_ask_again(
    db_url: str, make_world: MakeWorld, box: Box
) -> None:
    doomed = make_world(db_url, pool_size=2, validity_check_interval=0)
    gate = box.gate("held")  # the first run of "held" never ends in the doomed world
    held = doomed.trigger(Exclusive, box.key, "held")
    eventually(lambda: gate.entered.is_set())
    waiting = doomed.trigger(Exclusive, box.key, "waiting")
    eventually(
        lambda: [e.state for e in doomed.persistence.find_limits()] == ["holding", "waiting"]
    )
    rescuer = make_world(db_url, pool_size=2, validity_check_interval=0)
    assert rescuer.invalidate(doomed.id) == 2
    # nothing of the dead world is left; the rescuer asks again for both steps
    eventually(lambda: doomed.id not in {e.world_id for e in rescuer.persistence.find_limits()})
    for triggered in (held, waiting):
        plan = eventually(partial(succeeded, rescuer, triggered.execution_plan_id), timeout=30)
        assert all(s.state is not StepState.WAITING for s in plan.steps.values())
    assert box.runs == {"held": 2, "waiting": 1}
    eventually(lambda: rescuer.persistence.find_limits() == [])
    gate.open()


def succeeded(world: World, plan_id: str) -> ExecutionPlan | None:
    plan = world.persistence.load_execution_plan(plan_id)
    return plan if plan.result is PlanResult.SUCCESS else None
