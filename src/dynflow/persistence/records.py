"""Kinds of coordinator records, shared by the coordinator and the stores that write them."""

#: a registered world (id: the world's id)
WORLD = "world"
#: held by the world executing a plan (id: the plan's id)
EXECUTION_LOCK = "execution_lock"
#: held by the world that made a plan with ``world.plan()`` until it is executed: while
#: that world lives, no starting executor picks the plan up (it waits, e.g. for review)
PLANNED_LOCK = "planned_plan"
#: taken by the one world that invalidates a dead world (id: the dead world's id)
INVALIDATION_LOCK = "world_invalidation"
