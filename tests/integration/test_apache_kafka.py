"""The hub on Apache Kafka (issue 8), through testcontainers: the image docker-compose.yml runs
(apache/kafka, single KRaft node), started once for this module. Where no Docker engine
answers, every test here is skipped with that reason; nothing else in the suite needs Docker.

What differs from the embedded broker and is checked here: the idempotent producer is on
(Tansu lacks it), the ListOffsets answer is Apache Kafka's, and a consumer group hands a killed
worker's partitions to the survivor by the protocol's own rules."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity
from hub.broker import kafka
from hub.broker.embedded import free_port
from hub.runtime import Hub
from hub.settings import Settings
from hub.store import db
from hub.store.models import RecordEvent, SourceRecord
from tests.helpers import customer_env, produce_envs, wait_until

pytestmark = pytest.mark.integration

IMAGE = "apache/kafka:4.1.1"  # the default of docker-compose.yml's x-kafka-image


def docker_unavailable() -> str | None:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}): Apache Kafka tests need one"
    return None


@pytest.fixture(scope="module")
def apache_kafka() -> Iterator[str]:
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    from testcontainers.core.container import DockerContainer

    port = free_port()
    container = (
        DockerContainer(IMAGE)
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    container.start()
    bootstrap = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                asyncio.run(kafka.check_reachable(Settings(kafka_connect_timeout_s=3), bootstrap))
                break
            except kafka.BrokerUnreachable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield bootstrap
    finally:
        container.stop()


async def test_the_hub_runs_on_apache_kafka(apache_kafka: str, sqlite_url: str) -> None:
    n = 300
    settings = Settings(
        kafka_bootstrap=apache_kafka,
        database_url=sqlite_url,
        topic_partitions=3,
        sync_enabled=False,
        group_prefix=f"eai{free_port()}",
    )
    hub = Hub(settings, serve_api=False)
    await hub.start()
    try:
        assert hub.broker_info is not None and not hub.broker_info.is_tansu
        assert kafka.idempotence(settings, tansu=hub.broker_info.is_tansu) is True
        envs = [customer_env(i) for i in range(n)]
        await produce_envs(apache_kafka, topics.canonical(Entity.customer), envs)
        sessions = hub.sessions
        assert sessions is not None

        async def applied() -> bool:
            async with sessions() as s:
                return await s.scalar(select(func.count()).select_from(SourceRecord)) == n

        await wait_until(applied, timeout=120, what=f"{n} records on Apache Kafka")
        ends = await kafka.topic_end_offsets(settings, apache_kafka, [topics.canonical("customer")])
        assert sum(p.end_offset for p in ends) == n, "Apache Kafka's true end offsets"
        assert hub.epoch is not None and hub.epoch.losses == 0
    finally:
        await hub.stop()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_killed_workers_partitions_move_to_the_survivor(
    apache_kafka: str, store_url: str
) -> None:
    from tests.chaos import scaleout as so
    from tests.chaos.mixed import build

    stream = build(2_000, seed=6)
    engine = db.create_engine(store_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    await so.create_topics(apache_kafka)
    workers = [so.start_worker(apache_kafka, store_url, f"k{i}") for i in range(2)]
    try:
        await so.produce_stream(apache_kafka, stream)

        async def some() -> bool:
            async with sessions() as s:
                return bool(await s.scalar(select(func.count()).select_from(RecordEvent)))

        await wait_until(some, timeout=120, what="the first batch applied")
        workers[0].send_signal(signal.SIGKILL)
        await asyncio.to_thread(workers[0].wait)
        await wait_until(lambda: so.settled(sessions, stream), timeout=240, what="settled")
        result = await so.audit(sessions, stream)
    finally:
        for p in workers:
            await so.stop_worker(p)
        await engine.dispose()
    assert result.bad() == {}, result
