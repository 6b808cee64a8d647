"""CRM connector: customer cards, sales orders (and opportunities, kept in the CRM)."""

from connectors.crm.connector import build

__all__ = ["build"]
