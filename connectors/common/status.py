"""Per-connector, per-entity counters the admin API shows.

Counts are kept in process memory: they describe what this worker has seen since it started.
The durable truth (ledger, DLQ, cross-references) is in the hub store; these counters only
answer "is anything flowing through this connector right now, and is it being refused?".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EntityCounters:
    last_seen_at: datetime | None = None
    accepted: int = 0
    rejected: int = 0
    delivered: int = 0
    already_delivered: int = 0
    failed_transient: int = 0
    failed_permanent: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def failed(self) -> int:
        return self.failed_transient + self.failed_permanent


class ConnectorStatus:
    def __init__(self, system: str) -> None:
        self.system = system
        self.entities: dict[str, EntityCounters] = {}

    def _get(self, entity: str) -> EntityCounters:
        return self.entities.setdefault(entity, EntityCounters())

    def _error(self, counters: EntityCounters, reason: str) -> None:
        counters.last_error = reason
        counters.last_error_at = _now()

    def seen(self, entity: str) -> None:
        self._get(entity).last_seen_at = _now()

    def accepted(self, entity: str, n: int = 1) -> None:
        c = self._get(entity)
        c.accepted += n
        c.last_seen_at = _now()

    def rejected(self, entity: str, reason: str) -> None:
        c = self._get(entity)
        c.rejected += 1
        c.last_seen_at = _now()
        self._error(c, reason)

    def delivered(self, entity: str, *, duplicate: bool = False) -> None:
        c = self._get(entity)
        if duplicate:
            c.already_delivered += 1
        else:
            c.delivered += 1

    def failed(self, entity: str, reason: str, *, transient: bool) -> None:
        c = self._get(entity)
        if transient:
            c.failed_transient += 1
        else:
            c.failed_permanent += 1
        self._error(c, reason)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, c in sorted(self.entities.items()):
            row = asdict(c)
            row["failed"] = c.failed
            for key in ("last_seen_at", "last_error_at"):
                if row[key] is not None:
                    row[key] = row[key].isoformat()
            out[name] = row
        return {"system": self.system, "entities": out}
