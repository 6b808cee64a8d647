"""Routing flows: records, identity resolution, sync, orders/BOMs, urges, replay."""
