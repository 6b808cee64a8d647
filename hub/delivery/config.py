"""Delivery settings, read from the hub's Settings (``EAI_DELIVERY_*``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

from contracts.topics import SYSTEMS


def parse_targets(text: str, known: tuple[str, ...] | list[str] = SYSTEMS) -> dict[str, str]:
    """``"crm=http://127.0.0.1:8101,erp=http://..."`` -> {system: base url}.

    A system listed without a URL (``"pdm="``) is not delivered, like one not listed; a
    name that is not a known system or a URL that is not http(s) is a start-up error.
    """
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        system, sep, url = part.partition("=")
        system, url = system.strip(), url.strip()
        if not sep or not system:
            raise ValueError(f"delivery target {part!r}: expected system=url")
        if system not in known:
            raise ValueError(
                f"delivery target {part!r}: unknown system {system!r} (known: {', '.join(known)})"
            )
        if system in out:
            raise ValueError(f"delivery target {system!r} given twice")
        if not url:
            continue
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"delivery target {part!r}: the URL must be http(s)://host[:port]")
        out[system] = url.rstrip("/")
    return out


@dataclass(frozen=True)
class DeliveryConfig:
    targets: dict[str, str] = field(default_factory=dict)
    max_attempts: int = 8
    backoff_initial_ms: int = 500
    backoff_max_ms: int = 60_000
    concurrency: int = 16
    # rows claimed beyond the calls in flight, started the moment a call returns: a round
    # that queues behind the flows' batches for the store's write lock leaves the calls
    # going for that long (decision 60)
    claim_ahead: int = 128
    timeout_s: float = 10.0
    lease_s: float = 30.0
    poll_interval_ms: int = 250
    retry_timeout_s: float | None = None  # when set: the retry budget is time, not attempts
    # the hub's flows queue their messages to these targets in their own transactions
    # instead of publishing them to outbound.<system> (decision 54)
    direct: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("delivery_max_attempts must be at least 1")
        if self.retry_timeout_s is not None and self.retry_timeout_s <= 0:
            raise ValueError("delivery_retry_timeout_s must be positive (unset: attempts only)")
        if self.concurrency < 1:
            raise ValueError("delivery_concurrency must be at least 1")
        if self.claim_ahead < 0:
            raise ValueError("delivery_claim_ahead must be at least 0")
        if not 0 < self.backoff_initial_ms <= self.backoff_max_ms:
            raise ValueError("need 0 < delivery_backoff_initial_ms <= delivery_backoff_max_ms")
        if self.lease_s <= self.timeout_s + 1:
            # A lease running out while the call is still in flight lets a second worker
            # send the same message concurrently (harmless thanks to the idempotency key,
            # but a wasted call and a confusing log): the lease must outlive the timeout.
            raise ValueError(
                f"delivery_lease_s ({self.lease_s}) must exceed delivery_timeout_s "
                f"({self.timeout_s}) by more than a second"
            )

    @property
    def backoff_initial_s(self) -> float:
        return self.backoff_initial_ms / 1000

    @property
    def backoff_max_s(self) -> float:
        return self.backoff_max_ms / 1000

    @classmethod
    def from_settings(cls, settings: Any) -> DeliveryConfig:
        """Every ``delivery_<name>`` attribute the settings have; defaults for the others."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"delivery_{f.name}"
            if hasattr(settings, name):
                values[f.name] = getattr(settings, name)
        if "targets" in values:
            values["targets"] = parse_targets(values["targets"] or "")
        return cls(**values)
