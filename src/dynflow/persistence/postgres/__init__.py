"""The PostgreSQL adapter: the generic one with one-statement fast paths and NOTIFY."""
