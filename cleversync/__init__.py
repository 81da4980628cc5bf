"""CleverSync: keeps one SQL database per school in step with its Clever roster."""

__version__ = "0.1.0"
