"""The `advbridge` command (heavy imports happen inside the commands, so `--help` answers at once)."""

from bridge.cli.main import main

__all__ = ["main"]
