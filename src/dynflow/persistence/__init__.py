"""Durable state: execution plans, actions, steps, history and coordinator records."""

from dynflow.persistence.facade import Persistence

__all__ = ["Persistence"]
