"""Every setting of the hub: environment variables with the EAI_ prefix, or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EAI_", env_file=".env", extra="ignore")

    # Kafka. Empty bootstrap = start the embedded broker.
    kafka_bootstrap: str = Field(
        "", description="bootstrap servers; empty starts the embedded broker"
    )
    kafka_client_id: str = Field("eai-hub", description="Kafka client id")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle for TLS")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate for mutual TLS")
    kafka_ssl_keyfile: Path | None = Field(None, description="client key for mutual TLS")
    kafka_idempotence: Literal["auto", "on", "off"] = Field(
        "auto",
        description="idempotent producer; auto = off on Tansu (by cluster id), on elsewhere",
    )
    kafka_connect_timeout_s: float = Field(15.0, description="give up reaching the broker after")
    topic_partitions: int = Field(6, ge=1, description="partitions of topics the hub creates")
    topic_replication: int = Field(1, ge=1, description="replication factor of created topics")
    topic_retention_ms: int = Field(
        7 * 24 * 3600 * 1000, description="retention.ms of created topics"
    )
    topic_min_insync_replicas: int | None = Field(
        None, description="min.insync.replicas of created topics (production: 2)"
    )
    kafka_session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        description="consumer group session timeout: how soon a dead worker's "
        "partitions move to the others",
    )
    group_prefix: str = Field("eai", description="consumer group id prefix")
    broker_check_interval_s: float = Field(
        5.0, gt=0, description="how often each hub process checks the broker still holds its data"
    )
    broker_outage_remind_s: float = Field(
        30.0, gt=0, description="while the broker is unreachable, log a reminder this often"
    )
    broker_loss_republish_s: float = Field(
        3600.0,
        ge=0,
        description="after a broker lost its data: republish outbox rows sent this far back",
    )
    outbox_retention_s: float = Field(
        86_400.0,
        ge=0,
        description="delete outbox rows sent longer ago (never within broker_loss_republish_s); "
        "0 keeps them",
    )
    delivery_history_retention_s: float = Field(
        7 * 86_400.0,
        ge=0,
        description="delete delivered/suppressed delivery rows finished longer ago; 0 keeps them",
    )
    housekeeping_interval_s: float = Field(
        300.0, gt=0, description="how often the API process deletes history past its retention"
    )

    # Store.
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/eai-hub.db", description="SQLAlchemy async URL of the store"
    )
    database_connect_timeout_s: float = Field(15.0, description="give up reaching the store after")

    # Processing.
    batch_size: int = Field(500, ge=1, description="records per consumer batch / transaction")
    poll_timeout_ms: int = Field(200, ge=1, description="consumer poll wait")
    max_message_bytes: int = Field(
        1_000_000, ge=1024, description="larger messages go to the dead-letter topic"
    )
    relay_batch_size: int = Field(1000, ge=1, description="outbox rows published per relay round")
    relay_interval_ms: int = Field(200, ge=10, description="outbox relay polling interval")
    relay_lease_s: float = Field(30.0, description="outbox row lease for one relay")
    relay_handoff: bool | None = Field(
        None,
        description="the relay hands what it published to this process's flows, which take it "
        "when it is the next record of a partition they hold instead of waiting for a fetch; "
        "unset: on with the embedded broker, whose fetches wait their whole max wait, off "
        "with Apache Kafka, which answers a fetch as soon as records arrive",
    )
    retry_backoff_initial_ms: int = Field(200, description="first retry delay after a store error")
    retry_backoff_max_ms: int = Field(10_000, description="longest retry delay")

    # Connectors.
    max_webhook_bytes: int = Field(
        10_000_000, ge=1024, description="largest accepted webhook body (413 beyond)"
    )
    webhook_idempotency_retention_s: float = Field(
        86_400.0,
        gt=0,
        description="a webhook retried with the same Idempotency-Key within this long gets "
        "the first answer again, nothing published twice",
    )
    poll_sources: str = Field(
        "", description="tables to poll: system=database-url, comma separated (ERP, PDM)"
    )
    poll_interval_s: float = Field(2.0, gt=0, description="pause between polls with no backlog")

    # Synchronization flows (flows/sync, docs/sync.md).
    sync_enabled: bool = Field(
        True, description="run the sync flows (golden records, orders, BOMs, inventory)"
    )
    sync_config: str = Field(
        "", description="sync configuration YAML; empty: the packaged default_sync.yaml"
    )

    # Delivery to target systems (hub/delivery, docs/delivery.md).
    delivery_targets: str = Field(
        "",
        description="target system APIs: system=base-url, comma separated; "
        "a system without a URL is not delivered",
    )
    delivery_max_attempts: int = Field(
        8, ge=1, description="calls per message before it is dead-lettered"
    )
    delivery_retry_timeout_s: float | None = Field(
        None,
        gt=0,
        description="retry budget in time instead of attempts: a message failing this long "
        "since its first failure is dead-lettered",
    )
    delivery_backoff_initial_ms: int = Field(
        500, ge=1, description="first retry delay of a failed delivery"
    )
    delivery_backoff_max_ms: int = Field(
        60_000, ge=1, description="longest retry delay of a failed delivery"
    )
    delivery_concurrency: int = Field(
        16, ge=1, description="calls in flight per target system, each for a different key"
    )
    delivery_claim_ahead: int = Field(
        128,
        ge=0,
        description="rows a deliverer claims beyond its calls in flight, each started as soon "
        "as a call returns, so the calls go on while it waits for the store",
    )
    delivery_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one delivery call")
    delivery_lease_s: float = Field(
        30.0, gt=0, description="lease of a claimed delivery; must exceed the timeout"
    )
    delivery_poll_interval_ms: int = Field(
        250, ge=10, description="how often an idle deliverer looks for due retries"
    )
    delivery_direct: bool = Field(
        True,
        description="the hub's flows queue what they send to a delivery target in their own "
        "transaction; false: it crosses outbound.<system> first, as for any other producer",
    )

    # Approval urges (flows/urge; the policy format is documented in default_policy.yaml).
    urge_policy: Path | None = Field(
        None,
        description="urge policy YAML, validated at start (exit 2 naming field, value, rule); "
        "unset: the shipped flows/urge/default_policy.yaml",
    )

    # Identity resolution (flows/identity/). Checked when the hub builds its flows.
    identity_config: Path | None = Field(
        None, description="YAML/JSON file: matching thresholds and weights, survivorship rules"
    )
    identity_model_dir: Path | None = Field(
        None, description="folder with fitted models customer.json / material.json"
    )

    # API.
    host: str = Field("127.0.0.1", description="admin API bind address")
    port: int = Field(8080, description="admin API port")
    workers: int = Field(1, ge=1, description="worker processes in one consumer group")
    admin_token: SecretStr | None = Field(
        None,
        description="admin token the API accepts (stored hashed); unset: printed at first start",
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body of the admin API routes (413 beyond)"
    )

    log_level: str = Field("INFO", description="log level")
    fault_point: str | None = Field(
        None, description="testing only: SIGKILL the process at this named point"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
