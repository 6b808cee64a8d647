"""Topic names. One place, so connectors, flows and the admin API agree."""

from __future__ import annotations

from contracts.envelope import Entity

SYSTEMS: tuple[str, ...] = ("crm", "erp", "pdm", "oa", "drp")

DLQ = "eai.dlq"


def canonical(entity: Entity | str) -> str:
    """Canonical messages from connectors, keyed by ``source_system:source_id``."""
    return f"canonical.{Entity(entity).value}"


def golden(entity: Entity | str) -> str:
    """Golden-record events (upsert, merge, unmerge) from identity resolution."""
    return f"golden.{Entity(entity).value}"


def changes(entity: Entity | str) -> str:
    """Accepted changes only (no duplicates, no stale updates), from the records flow."""
    return f"changes.{Entity(entity).value}"


def native(system: str, entity: str) -> str:
    """Raw native records for systems that publish to Kafka themselves."""
    return f"{system}.{entity}.native"


def outbound(system: str) -> str:
    """Canonical messages addressed to one target system; its sink consumes them."""
    return f"outbound.{system}"


def all_topics() -> list[str]:
    names = [DLQ]
    names += [canonical(e) for e in Entity]
    names += [changes(e) for e in Entity]
    names += [golden(e) for e in (Entity.customer, Entity.material)]
    names += [outbound(s) for s in SYSTEMS]
    return names
