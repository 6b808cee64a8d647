"""Canonical message contracts of eai-hub: envelope and bodies. No I/O here."""
