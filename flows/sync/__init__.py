"""Synchronization flows: golden records, orders, BOMs and inventory across the systems."""
