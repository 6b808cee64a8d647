"""PDM connector: parts, multi-level design BOMs, engineering change orders."""

from connectors.pdm.connector import build

__all__ = ["build"]
