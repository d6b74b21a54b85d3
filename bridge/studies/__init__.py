"""Study kinds: each plans its tasks, runs one, and aggregates the persisted results (evasion first)."""
