"""Many worlds on one database: connectors, the client and executor dispatchers, and the
remote request/answer protocol (see ``docs/architecture.md``)."""
