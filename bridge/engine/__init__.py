"""The study engine: recipes (victims described), tasks with keys, results, executors (local, Ray), the store."""
