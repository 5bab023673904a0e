"""The engine's services: planning, plan control, liveness and delayed plans.

Each takes the ports it needs (persistence, coordinator, executor, cluster, clock)
and none imports :mod:`dynflow.world`: the world builds them and delegates to them.
"""
