"""Prometheus metrics of delivery (on the hub's registry) and in-process counters."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from hub.metrics import REGISTRY

ATTEMPTS = Counter(
    "eai_delivery_attempts_total",
    "Calls to a target system's API, by outcome (delivered, duplicate, transient, permanent).",
    ["system", "outcome"],
    registry=REGISTRY,
)
DEAD = Counter(
    "eai_delivery_dead_lettered_total",
    "Messages dead-lettered after a permanent refusal or the last attempt.",
    ["system"],
    registry=REGISTRY,
)
PENDING = Gauge(
    "eai_delivery_pending", "Messages waiting for delivery, by target.", ["system"],
    registry=REGISTRY,
)  # fmt: skip
RETRYING = Gauge(
    "eai_delivery_retrying",
    "Pending messages that failed at least once.",
    ["system"],
    registry=REGISTRY,
)
OLDEST = Gauge(
    "eai_delivery_oldest_pending_seconds",
    "Age of the oldest message waiting for delivery (0 when none).",
    ["system"],
    registry=REGISTRY,
)


@dataclass
class DelivererCounters:
    """What this process's deliverer for one system did since it started."""

    attempts: int = 0
    delivered: int = 0
    duplicates: int = 0  # 409: an earlier attempt had landed; counted in delivered too
    failed_transient: int = 0
    failed_permanent: int = 0
    dead_lettered: int = 0
    lost_leases: int = 0
    store_errors: int = 0
    in_flight: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_delivered_at: float | None = None

    @property
    def failed(self) -> int:
        return self.failed_transient + self.failed_permanent

    def error(self, reason: str) -> None:
        self.last_error, self.last_error_at = reason, time.time()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": self.failed}
