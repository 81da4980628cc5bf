"""The school databases: their tables as entities, reads and set-based writes."""
