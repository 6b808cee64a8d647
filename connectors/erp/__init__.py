"""ERP connector: customer master, sales orders, materials, BOMs, stock, requisitions."""

from connectors.erp.connector import build

__all__ = ["build"]
