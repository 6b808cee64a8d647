"""Prometheus metrics. Names are stable; docs/operations.md lists them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "eai_flow_messages_total",
    "Messages consumed by a flow, by outcome (applied, duplicate, dead_lettered).",
    ["flow", "outcome"],
    registry=REGISTRY,
)
BATCH_RETRIES = Counter(
    "eai_flow_batch_retries_total", "Batches rolled back and retried.", ["flow"], registry=REGISTRY
)
OUTBOX_PUBLISHED = Counter(
    "eai_outbox_published_total", "Outbox rows published to Kafka.", registry=REGISTRY
)
PARKED = Gauge(
    "eai_parked_messages",
    "Messages parked until a target knows what they refer to.",
    registry=REGISTRY,
)
PARKED_OVERDUE = Gauge(
    "eai_parked_overdue",
    "Parked messages waiting longer than parking.overdue_after_s.",
    registry=REGISTRY,
)
HUB_RESTARTS = Counter(
    "eai_hub_restarts_total",
    "Hubs this process started again after the broker lost its data.",
    registry=REGISTRY,
)
WORKER_RESPAWNS = Counter(
    "eai_worker_respawns_total",
    "Worker processes of `eai-hub run --workers N` started again after they exited.",
    registry=REGISTRY,
)
HOUSEKEEPING_DELETED = Counter(
    "eai_housekeeping_deleted_total",
    "History rows deleted by housekeeping past their retention, by table (outbox, deliveries).",
    ["table"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge("eai_outbox_pending", "Outbox rows not yet published.", registry=REGISTRY)
DEAD_LETTERS = Gauge(
    "eai_dead_letters_open", "Dead letters neither re-driven nor discarded.", registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "eai_consumer_lag",
    "End offset minus committed offset.",
    ["flow", "topic", "partition"],
    registry=REGISTRY,
)
URGES_SENT = Counter(
    "eai_urge_sent_total",
    "Urges delivered to the outbox by this process's urge scheduler (ladder and one-click).",
    registry=REGISTRY,
)
URGE_CONFLICTS = Counter(
    "eai_urge_conflicts_total",
    "Urges another worker had already stored (not sent again).",
    registry=REGISTRY,
)
URGE_STALE = Counter(
    "eai_urge_stale_total",
    "Urge results dropped because the approval changed meanwhile (decided, updated, clicked).",
    registry=REGISTRY,
)
URGE_CAPPED = Counter(
    "eai_urge_capped_total",
    "Urges held back at write time by the recipient's daily cap (sent later).",
    registry=REGISTRY,
)
URGE_ERRORS = Counter(
    "eai_urge_errors_total",
    "Urge scheduler failures: a whole tick (stage tick) or one approval (stage approval, "
    "looked at again after 15 minutes).",
    ["stage"],
    registry=REGISTRY,
)
# Both series exist from the start at 0, so increase() alerts see the first failure.
URGE_ERRORS.labels("tick")
URGE_ERRORS.labels("approval")
URGE_UNPLANNABLE = Counter(
    "eai_urge_unplannable_total",
    "Open approvals the urge scheduler can no longer plan under the current policy: no timer, "
    "not urged again until a new request message or a policy change.",
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Histogram(
    "eai_event_loop_lag_seconds",
    "How much later than due this process's event loop woke a 50 ms timer (admin API process).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
