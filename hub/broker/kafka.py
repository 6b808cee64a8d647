"""Kafka clients configured from settings, topic creation and end offsets.

End offsets come from a fetch's high watermark as well as from ListOffsets: the embedded broker
answers ListOffsets(latest) with the base offset of the last batch + 1, Apache Kafka with the
true end. Taking the maximum of both is correct on either broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from hub.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnreachable(RuntimeError):
    pass


def client_kwargs(settings: Settings, bootstrap: str) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
        kw["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        kw["sasl_plain_username"] = settings.kafka_sasl_username
        kw["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value()
            if settings.kafka_sasl_password
            else None
        )
    return kw


def idempotence(settings: Settings, tansu: bool) -> bool:
    if settings.kafka_idempotence == "auto":
        # The embedded broker (Tansu) fails InitProducerId; Apache Kafka supports it.
        return not tansu
    return settings.kafka_idempotence == "on"


def make_producer(settings: Settings, bootstrap: str, tansu: bool) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_kwargs(settings, bootstrap),
        acks="all",
        enable_idempotence=idempotence(settings, tansu),
        linger_ms=5,
        max_request_size=max(settings.max_message_bytes * 2, 1_048_576),
        request_timeout_ms=30_000,
    )


def make_consumer(
    settings: Settings, bootstrap: str, *topics: str, group_id: str | None, **extra: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **client_kwargs(settings, bootstrap),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max(settings.max_message_bytes * 2, 1_048_576),
        fetch_max_bytes=max(settings.max_message_bytes * 4, 52_428_800),
        **extra,
    )


@dataclass(frozen=True)
class BrokerInfo:
    cluster_id: str | None
    brokers: int

    @property
    def is_tansu(self) -> bool:
        """Tansu (the embedded broker) lacks the idempotent producer; it names its cluster
        tansu_cluster unless told otherwise, and the hub never tells it otherwise."""
        return (self.cluster_id or "").startswith("tansu")


async def check_reachable(settings: Settings, bootstrap: str) -> BrokerInfo:
    """Raise BrokerUnreachable naming the address if metadata cannot be had in time."""
    admin = AIOKafkaAdminClient(
        **client_kwargs(settings, bootstrap), request_timeout_ms=5000, retry_backoff_ms=200
    )
    try:
        await asyncio.wait_for(admin.start(), settings.kafka_connect_timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), settings.kafka_connect_timeout_s)
        return BrokerInfo(cluster.get("cluster_id"), len(cluster.get("brokers", ())))
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        raise BrokerUnreachable(
            f"Kafka broker at {bootstrap} is unreachable after "
            f"{settings.kafka_connect_timeout_s:.0f}s: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        await admin.close()


async def ensure_topics(
    settings: Settings, bootstrap: str, names: list[str], partitions: int | None = None
) -> list[str]:
    """Create missing topics with the configured partitions, replication and retention."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings, bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        configs = {"retention.ms": str(settings.topic_retention_ms)}
        if settings.topic_min_insync_replicas:
            configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
        missing = [n for n in names if n not in existing]
        if missing:
            new = [
                NewTopic(
                    n,
                    partitions or settings.topic_partitions,
                    settings.topic_replication,
                    topic_configs=configs,
                )
                for n in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()


async def stop_joining_consumer(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    """Stop a consumer that may still be waiting for its first group assignment.

    aiokafka's ``stop()`` first waits for its coordinator's routine, and that routine may be
    inside a JoinGroup the broker holds until the group's earlier members are gone: seconds on
    Apache Kafka's initial rebalance delay, about twice the session timeout on the embedded
    broker after a restart. A member that has not joined has no generation to leave and no
    offsets to commit, so after ``timeout_s`` the wait is given up (which cancels that routine)
    and the parts ``stop()`` had not reached are closed here; their names are aiokafka's
    (pinned in pyproject.toml; tests/unit/test_runner_stop.py fails if they change)."""
    try:
        await asyncio.wait_for(consumer.stop(), timeout_s)
    except TimeoutError:
        fetcher = consumer._fetcher
        if fetcher is not None:
            await fetcher.close()
        await consumer._client.close()


@dataclass(frozen=True)
class PartitionInfo:
    topic: str
    partition: int
    end_offset: int


async def topic_end_offsets(
    settings: Settings, bootstrap: str, topics: list[str] | None = None
) -> list[PartitionInfo]:
    consumer = make_consumer(settings, bootstrap, group_id=None)
    await consumer.start()
    try:
        names = sorted(topics if topics is not None else await consumer.topics())
        tps = [
            TopicPartition(t, p)
            for t in names
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        return [
            PartitionInfo(tp.topic, tp.partition, off)
            for tp, off in (await end_offsets(consumer, tps)).items()
        ]
    finally:
        await consumer.stop()


async def end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """True end offsets on Apache Kafka and on the embedded broker (see module docstring).

    ``consumer`` must be a group-less consumer: it is assigned the partitions for the probe.
    """
    if not tps:
        return {}
    listed = await consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    result = dict(listed)
    pending = {tp for tp in tps if listed[tp] > 0}
    deadline = asyncio.get_running_loop().time() + 5.0
    while pending and asyncio.get_running_loop().time() < deadline:
        await consumer.getmany(*pending, timeout_ms=200, max_records=1)
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None:
                result[tp] = max(result[tp], hw)
                pending.discard(tp)
    return result


async def committed_offsets(
    settings: Settings, bootstrap: str, groups: dict[str, list[TopicPartition]]
) -> dict[str, dict[tuple[str, int], int]]:
    """Committed offsets per consumer group: what all workers of the group have finished, not
    only this process. Read with a member that never subscribes (so it never joins the group
    and never triggers a rebalance): the admin OffsetFetch of the embedded broker can't be
    decoded by aiokafka, the consumer's can, and it is the same request on Apache Kafka."""
    out: dict[str, dict[tuple[str, int], int]] = {}
    for gid, tps in groups.items():
        consumer = AIOKafkaConsumer(
            **client_kwargs(settings, bootstrap), group_id=gid, enable_auto_commit=False
        )
        await consumer.start()
        try:
            found: dict[tuple[str, int], int] = {}
            for tp in tps:
                off = await consumer.committed(tp)
                if off is not None and off >= 0:
                    found[(tp.topic, tp.partition)] = off
            out[gid] = found
        finally:
            await consumer.stop()
    return out
