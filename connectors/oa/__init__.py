"""OA connector: approvals (forms, status upgrades, contracts), decisions, reminders."""

from connectors.oa.connector import build

__all__ = ["build"]
