"""The streaming store path of the identity flow (flows/identity/store_index.py) on a real store,
without a broker: how many statements a one-record batch sends, the version check of the
one-statement write, and that a prefetch split into several statements reads the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.customer import Customer
from contracts.envelope import Entity, Envelope
from flows.identity import flow as identity
from flows.identity import store_index
from flows.identity.blocking import blocking_keys
from flows.identity.profile import build_profile
from flows.identity.resolver import golden_id_for
from hub.core.errors import TransientError
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, FlowContext, Item
from hub.store import db
from hub.store.identity_models import GoldenMember, GoldenRecord
from hub.store.models import OutboxRow, ProcessedMessage, SourceRecord

pytestmark = pytest.mark.integration

HUAWEI = "914403001922038216"
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
A = {
    "kind": "organization",
    "name": "华为技术有限公司",
    "identifiers": [{"scheme": "uscc", "value": HUAWEI}],
    "phones": ["0755-28780808"],
}
B = {**A, "name": "华为技术有限公司(深圳)"}
C = {"kind": "organization", "name": "深圳市腾讯计算机系统有限公司", "phones": ["0755-86013388"]}


@asynccontextmanager
async def store(url: str) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[str]]]:
    """A migrated store and the statements sent to it (an executemany counts once)."""
    engine = db.create_engine(url)
    await db.migrate(engine)
    sent: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)

    def logged(query: Any) -> None:
        # statements sent to asyncpg straight (decision 47); SQLAlchemy's own prepared ones
        # are not logged there, so nothing counts twice
        if query.query.strip().rstrip(";").upper() not in ("", "BEGIN", "COMMIT", "ROLLBACK"):
            sent.append(query.query)

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # on every checkout: connections opened before this listener count too (a set)
        driver = getattr(record, "driver_connection", None)
        if driver is not None and hasattr(driver, "add_query_logger"):
            driver.add_query_logger(logged)

    try:
        yield db.sessionmaker(engine), sent
    finally:
        await engine.dispose()


def item(system: str, sid: str, body: dict[str, Any]) -> Item:
    env = Envelope(
        entity=Entity.customer, source_system=system, source_id=sid, source_version=1, body=body
    )
    rec = InboundRecord("changes.customer", 0, 0, env.model_dump_json().encode())
    return Item(rec, env, Customer.model_validate(body))


async def resolve(sessions: async_sessionmaker[AsyncSession], *items: Item) -> None:
    flow = identity.IdentityFlow()
    async with sessions() as s, s.begin():
        await flow.handle(FlowContext(s, identity.NAME), list(items))
    await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once


async def test_a_one_record_batch_sends_a_fixed_small_number_of_statements(
    store_url: str,
) -> None:
    async with store(store_url) as (sessions, sent):
        # a warm connection: asyncpg introspects the types of its first statements once
        await resolve(sessions, item("oa", "w", C))
        sent.clear()
        await resolve(sessions, item("crm", "1", A))
        new = len(sent)
        first = list(sent)
        sent.clear()
        await resolve(sessions, item("erp", "7", B))
        merged = len(sent)
        async with sessions() as s:
            links = dict(
                (await s.execute(select(GoldenMember.source_system, GoldenMember.golden_id))).all()
            )
            version = await s.scalar(
                select(GoldenRecord.version).where(GoldenRecord.golden_id == links["crm"])
            )
    assert links["erp"] == links["crm"] == golden_id_for("customer", "crm", "1")
    assert version == 2
    if store_url.startswith("postgresql"):
        # one prefetch and one write; a merge also reads the golden record's state
        assert (new, merged) == (2, 3), (first, sent)
    else:
        # SQLite has no round trips to save: BEGIN IMMEDIATE, one read, then one statement per
        # table written (golden row, postings, counts, members, events)
        assert (new, merged) == (7, 8), (first, sent)


async def test_the_write_checks_the_version_it_read(store_url: str) -> None:
    async with store(store_url) as (sessions, _):
        await resolve(sessions, item("crm", "1", A))
        gid = golden_id_for("customer", "crm", "1")
        values = {
            "profile": {},
            "record": {"name": "x"},
            "winners": {},
            "name": "x",
            "search_text": "",
            "member_count": 1,
            "status": "active",
            "merged_into": None,
        }
        async with sessions() as s:
            now = await s.scalar(select(GoldenRecord.updated_at))
        stale = store_index.Writes("customer")
        stale.golden_updates.append((gid, 7, {**values, "version": 8, "updated_at": now}))
        with pytest.raises(TransientError):
            async with sessions() as s, s.begin():
                await store_index.write_batch(s, stale)
        fresh = store_index.Writes("customer")
        fresh.golden_updates.append((gid, 1, {**values, "version": 2, "updated_at": now}))
        async with sessions() as s, s.begin():
            await store_index.write_batch(s, fresh)
        async with sessions() as s:
            row = (await s.execute(select(GoldenRecord.version, GoldenRecord.name))).one()
    assert tuple(row) == (2, "x")


async def test_a_prefetch_split_into_several_statements_reads_the_same(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with store(store_url) as (sessions, _):
        await resolve(sessions, item("crm", "1", A), item("crm", "2", C))
        async with sessions() as s, s.begin():
            s.add(
                SourceRecord(
                    entity="customer",
                    source_system="crm",
                    source_id="1",
                    source_version=1,
                    source_ts=T0,
                    op="upsert",
                    payload=A,
                    revision=1,
                    last_message_id="m-1",
                    updated_at=T0,
                )
            )
        pairs = [("erp", "7"), ("crm", "1"), ("crm", "2"), ("oa", "9")]
        keys = [k for body in (A, B, C) for k in blocking_keys(build_profile("customer", body))]
        extra = [golden_id_for("customer", *p) for p in pairs]

        async def view() -> tuple[Any, ...]:
            async with sessions() as s:
                i = await store_index.BatchIndex.load(s, "customer", 60, pairs, keys, extra)
            return (i.xref, i.known, i.rows, i.profiles, i._postings, i.sources, i.links)

        whole = await view()
        monkeypatch.setattr(store_index, "CHUNK", 1)
        split = await view()
    assert whole == split
    assert len(whole[2]) == 2 and whole[1] == {("crm", "1"), ("crm", "2")}
    assert list(whole[5]) == [("crm", "1")] and whole[5][("crm", "1")].payload == A


async def test_a_one_record_batch_through_the_core_sends_three_statements_on_postgres(
    store_url: str,
) -> None:
    """Decision 47: the ledger's rows are claimed in one statement before the handler, the
    golden events go to the outbox in the flow's write, and a connection back from the last
    batch a moment ago is not pinged: ledger claim, prefetch, write (and, for a merge, the
    golden record's state). SQLite keeps check, reads, per-table writes, outbox and mark."""
    async with store(store_url) as (sessions, sent):
        processor = BatchProcessor(identity.spec(), sessions, max_message_bytes=1_000_000)

        async def process(body_item: Item) -> int:
            sent.clear()
            stats = await processor.process([body_item.rec])
            await asyncio.sleep(0)  # asyncpg calls its query loggers soon, not at once
            assert stats.applied == 1
            return len(sent)

        await process(item("oa", "w", C))  # warm: asyncpg introspects types once
        new = await process(item("crm", "1", A))
        joining = item("erp", "7", B)
        merged = await process(joining)
        sent.clear()
        duplicate = await processor.process([joining.rec])  # the same message again
        await asyncio.sleep(0)
        again = len(sent)
        async with sessions() as s:
            links = dict(
                (await s.execute(select(GoldenMember.source_system, GoldenMember.golden_id))).all()
            )
            ledger = await s.scalar(select(func.count()).select_from(ProcessedMessage))
            outbox = list(await s.scalars(select(OutboxRow.topic).order_by(OutboxRow.id)))
    assert links["erp"] == links["crm"]
    assert (duplicate.applied, duplicate.duplicates) == (0, 1)
    assert ledger == 3 and outbox == ["golden.customer"] * 3
    if store_url.startswith("postgresql"):
        assert (new, merged, again) == (3, 4, 1), sent
    else:
        assert (new, merged, again) == (10, 11, 2), sent
