"""Dispatchers: requests between worlds as futures (client) and as work (executor)."""
