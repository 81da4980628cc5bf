"""The sync engine: pure planning, set-based writes, history, leases, and the per-school run."""
