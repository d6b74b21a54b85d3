"""Scenario files: the schema (the common keys plus each study kind's sections), `--set` overrides, validation."""
