"""Execution plans: states, flows, the read model and the plan builder."""
