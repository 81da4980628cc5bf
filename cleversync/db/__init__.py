"""Databases: the control database (SessionDb) and one database per school."""
