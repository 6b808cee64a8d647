"""Delivery runtime: canonical messages on ``outbound.<system>`` to each target system's API,
exactly once in effect, in order per key, retried with backoff without holding back other keys
or other systems, dead-lettered when refused or out of attempts. See docs/delivery.md.
"""

from hub.delivery.config import DeliveryConfig, parse_targets
from hub.delivery.service import DeliveryService, delivery_status

__all__ = ["DeliveryConfig", "DeliveryService", "delivery_status", "parse_targets"]
