"""SessionDb: the school registry, sync history and leases (every statement on SessionDb)."""
