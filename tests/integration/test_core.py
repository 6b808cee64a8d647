"""The correctness core on the embedded broker over TCP and a real store (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.models import DeadLetter, RecordEvent, SourceRecord
from tests.helpers import customer_env, header, produce, produce_envs, read_topic, wait_until

pytestmark = pytest.mark.integration


@asynccontextmanager
async def running_hub(broker: str, store_url: str, **kw: object) -> AsyncIterator[Hub]:
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        topic_partitions=3,
        **kw,  # type: ignore[arg-type]
    )
    hub = Hub(settings, serve_api=False)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def count(hub: Hub, stmt: object) -> int:
    assert hub.sessions is not None
    async with hub.sessions() as s:
        return int(await s.scalar(stmt))  # type: ignore[arg-type]


async def test_same_message_three_times_has_one_effect(broker: str, store_url: str) -> None:
    env = customer_env(1)
    async with running_hub(broker, store_url) as hub:
        await produce_envs(broker, topics.canonical(Entity.customer), [env, env, env])
        later = customer_env(2)
        await produce_envs(broker, topics.canonical(Entity.customer), [later])

        async def both_seen() -> bool:
            return await count(hub, select(func.count()).select_from(SourceRecord)) == 2

        await wait_until(both_seen, what="both records stored")
        await hub.relay.drain()  # type: ignore[union-attr]
        events = await count(
            hub, select(func.count()).where(RecordEvent.message_id == str(env.message_id))
        )
        revision = await count(
            hub, select(SourceRecord.revision).where(SourceRecord.source_id == "C00001")
        )
        assert events == 1
        assert revision == 1
        assert hub.runners[0].metrics.duplicates == 2
    changes = await read_topic(broker, topics.changes(Entity.customer))
    caused_by = [header(r, "eai.message_id") for r in changes]
    assert len(caused_by) == 2, "one change per distinct message, none for the two repeats"


async def test_stale_update_is_recorded_not_applied(broker: str, store_url: str) -> None:
    v2 = customer_env(7, version=2, name="新名称有限公司")
    v1 = customer_env(7, version=1, name="旧名称有限公司")
    async with running_hub(broker, store_url) as hub:
        await produce_envs(broker, topics.canonical(Entity.customer), [v2, v1])

        async def two_events() -> bool:
            return await count(hub, select(func.count()).select_from(RecordEvent)) == 2

        await wait_until(two_events, what="both versions seen")
        assert hub.sessions is not None
        async with hub.sessions() as s:
            rec = await s.scalar(select(SourceRecord))
            outcome = await s.scalar(
                select(RecordEvent.outcome).where(RecordEvent.message_id == str(v1.message_id))
            )
        assert rec is not None and rec.payload["name"] == "新名称有限公司"
        assert rec.source_version == 2
        assert outcome == "stale"


BAD_INPUTS = {
    "not-json": (b"{this is not json", "deserialize", "must be valid JSON"),
    "not-utf8": (b'{"name": "\xb9\xe3\xd6\xdd"}', "deserialize", "must be UTF-8"),
    "contract": (None, "validate", "body.kind"),
    "envelope": (b'{"entity": "customer", "source_id": "x"}', "validate", "envelope.source_system"),
    "oversize": (None, "receive", "larger than the limit"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
async def test_bad_input_goes_to_dlq_and_stream_goes_on(
    broker: str, sqlite_url: str, kind: str
) -> None:
    raw, stage, reason_part = BAD_INPUTS[kind]
    if kind == "contract":
        good = customer_env(3)
        raw = good.model_copy(update={"body": {"kind": "company", "name": "x"}}).to_bytes()
    if kind == "oversize":
        raw = customer_env(4, name="大" * 3000).to_bytes()
    assert raw is not None
    topic = topics.canonical(Entity.customer)
    async with running_hub(broker, sqlite_url, max_message_bytes=4096) as hub:
        await produce(broker, topic, [(b"crm:bad", raw)])
        after = customer_env(5)
        await produce_envs(broker, topic, [after])

        async def good_one_applied() -> bool:
            return await count(hub, select(func.count()).select_from(SourceRecord)) == 1

        await wait_until(good_one_applied, what="the good message after the bad one")
        await hub.relay.drain()  # type: ignore[union-attr]
        assert hub.sessions is not None
        async with hub.sessions() as s:
            dl = (await s.execute(select(DeadLetter))).scalar_one()
        assert dl.stage == stage
        assert reason_part in dl.reason
        assert dl.value == raw, "the original bytes are kept"
        assert (dl.topic, dl.flow) == (topic, "records")
    dlq = await read_topic(broker, topics.DLQ)
    assert len(dlq) == 1
    rec = dlq[0]
    assert rec.value == raw
    assert reason_part in (header(rec, "eai.error.reason") or "")
    assert header(rec, "eai.error.stage") == stage
    assert header(rec, "eai.error.topic") == topic
    assert header(rec, "eai.error.offset") is not None
    assert header(rec, "eai.error.attempts") == "1"


async def test_journal_keeps_every_consumed_message(broker: str, sqlite_url: str) -> None:
    from hub.store.models import JournalEntry

    envs = [customer_env(i) for i in range(20)]
    async with running_hub(broker, sqlite_url) as hub:
        await produce_envs(broker, topics.canonical(Entity.customer), envs + envs[:5])

        async def all_journaled() -> bool:
            return await count(hub, select(func.count()).select_from(JournalEntry)) == 25

        await wait_until(all_journaled, what="25 journal rows")
        assert await count(hub, select(func.count()).select_from(SourceRecord)) == 20


async def test_the_ledger_finds_exactly_the_ids_processed_by_that_consumer(store_url: str) -> None:
    """SQLite runs the lookup as driver SQL, PostgreSQL through the ORM: both answer the same,
    beyond one IN list of 500 too."""
    import uuid

    from hub.core.ledger import already_processed, mark_processed
    from hub.store import db

    engine = db.create_engine(store_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    try:
        mine = [str(uuid.uuid4()) for _ in range(700)]
        other = str(uuid.uuid4())
        async with sessions() as s, s.begin():
            await mark_processed(s, "records", mine[::2])
            await mark_processed(s, "identity", [other, mine[1]])
        async with sessions() as s:
            found = await already_processed(s, "records", [*mine, other, mine[0]])
            assert found == set(mine[::2])
            assert await already_processed(s, "records", []) == set()
    finally:
        await engine.dispose()


async def test_a_hub_with_its_api_stops_within_seconds(broker: str, sqlite_url: str) -> None:
    """SIGTERM, a restart after a broker loss and every test hub go through stop(): a task
    that never ends on its own (the event-loop probe did) made each stop wait the whole grace
    period before cancelling it."""
    import time

    from hub.runtime import STOP_GRACE_S
    from tests.integration.test_delivery import free_port

    settings = Settings(
        kafka_bootstrap=broker, database_url=sqlite_url, host="127.0.0.1", port=free_port()
    )
    hub = Hub(settings, run_urge_scheduler=False)
    await hub.start()
    started = time.monotonic()
    await hub.stop()
    took = time.monotonic() - started
    assert took < STOP_GRACE_S / 2, f"stop took {took:.1f} s"


async def test_a_hub_stopped_while_its_flows_join_their_groups_stops_at_once(
    broker: str, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted hub's flows wait for their groups to take them in: on the embedded broker
    about twice the session timeout after the previous members left (7 s at the tests' 3 s).
    A stop in that window (SIGTERM right after a restart, a supervisor giving up) waited for
    the join, up to the whole grace period, and then cancelled the flows."""
    import time

    async with running_hub(broker, sqlite_url) as first:

        async def joined() -> bool:
            return all(r.consumer.assignment() for r in first.runners)

        await wait_until(joined, 30, "the first hub's flows in their groups")
    hub = Hub(
        Settings(kafka_bootstrap=broker, database_url=sqlite_url, topic_partitions=3),
        serve_api=False,
    )
    await hub.start()
    assert not any(r.consumer.assignment() for r in hub.runners)  # still joining
    started = time.monotonic()
    await hub.stop()
    took = time.monotonic() - started
    assert took < 4.0, f"stop took {took:.1f} s"
    assert "still running" not in caplog.text


async def _what_the_hub_of_the_lost_log_left_behind(broker: str, sqlite_url: str) -> Settings:
    """What the previous hub left behind when it noticed the loss too late: offsets committed
    on the new broker from positions in the lost log (past the six records the new log holds),
    and a seventh record it sent to the lost broker and marked sent after the outbox was marked
    for republishing. It stamped the new broker when it noticed the loss."""
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from hub.broker import kafka
    from hub.broker.epoch import EPOCH_TOPIC
    from hub.core.outbox import add_rows, envelope_values
    from hub.store import db

    topic = topics.canonical(Entity.customer)
    settings = Settings(kafka_bootstrap=broker, database_url=sqlite_url, topic_partitions=3)
    await kafka.ensure_topics(settings, broker, [topic], partitions=3)
    await kafka.ensure_topics(settings, broker, [EPOCH_TOPIC], partitions=1)
    await produce(broker, EPOCH_TOPIC, [(None, b"the-new-brokers-epoch")])
    on_the_new_log = [customer_env(i) for i in range(1, 7)]
    await produce_envs(broker, topic, on_the_new_log)
    stale = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=f"{settings.group_prefix}.records",
        enable_auto_commit=False,
    )
    await stale.start()
    try:
        stale.assign([TopicPartition(topic, p) for p in range(3)])
        await stale.commit({TopicPartition(topic, p): len(on_the_new_log) for p in range(3)})
    finally:
        await stale.stop()
    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    async with db.sessionmaker(engine)() as s, s.begin():
        await add_rows(
            s, [{**envelope_values(topic, customer_env(7)), "sent_at": datetime.now(UTC)}]
        )
    await engine.dispose()
    return settings


async def _all_seven_applied(hub: Hub) -> None:
    async def all_seven() -> bool:
        return await count(hub, select(func.count()).select_from(SourceRecord)) == 7

    await wait_until(all_seven, what="the six records on the new log and the lost one")


async def test_a_hub_started_again_after_a_broker_loss_reads_the_new_log_from_its_start(
    broker: str, sqlite_url: str
) -> None:
    """The hub started in the place of one that noticed the loss (``from_beginning``, as
    ``Restarting`` starts it) applies every record all the same."""
    settings = await _what_the_hub_of_the_lost_log_left_behind(broker, sqlite_url)
    hub = Hub(settings, serve_api=False, from_beginning=True)
    await hub.start()
    try:
        await _all_seven_applied(hub)
    finally:
        await hub.stop()


async def test_a_process_started_by_its_supervisor_after_a_broker_loss_recovers_from_it(
    broker: str, sqlite_url: str
) -> None:
    """A hub process that exited on the loss is started again by systemd or Docker: a new
    process, which knows of the loss only from the store. It reads the new log from its start
    all the same, and once the loss is recovered the next start reads from the committed
    offsets again instead of the whole log."""
    from datetime import UTC, datetime, timedelta

    from hub.store import db
    from hub.store.models import KeyValue

    settings = await _what_the_hub_of_the_lost_log_left_behind(broker, sqlite_url)
    engine = db.create_engine(sqlite_url)
    sessions = db.sessionmaker(engine)
    loss = "broker.epoch.the-new-brokers-epoch"
    try:
        # the process that noticed the loss claimed its republishing, a while ago
        noticed = datetime.now(UTC) - timedelta(minutes=5)
        async with sessions() as s, s.begin():
            s.add(KeyValue(name=loss, value={"at": noticed.isoformat()}, updated_at=noticed))

        hub = Hub(settings, serve_api=False)
        await hub.start()
        try:
            await _all_seven_applied(hub)

            async def recovered() -> bool:
                async with sessions() as s:
                    row = await s.get(KeyValue, loss)
                    return row is not None and "recovered_at" in row.value

            await wait_until(recovered, what="the loss marked recovered")
        finally:
            await hub.stop()

        await produce_envs(broker, topics.canonical(Entity.customer), [customer_env(8)])
        again = Hub(settings, serve_api=False)
        await again.start()
        try:

            async def eight() -> bool:
                return await count(again, select(func.count()).select_from(SourceRecord)) == 8

            await wait_until(eight, what="the record produced after the recovery")
            records = next(r for r in again.runners if r.name == "records")
            assert records.metrics.duplicates == 0, "the log was read from its start again"
        finally:
            await again.stop()
    finally:
        await engine.dispose()
