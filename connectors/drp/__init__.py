"""DRP connector: distributors, channel inventory and sell-through, replenishment requests."""

from connectors.drp.connector import build

__all__ = ["build"]
