"""The generic adapter: SQLAlchemy Core on SQLite, MySQL/MariaDB (and any database)."""
