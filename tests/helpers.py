"""Test helpers: build canonical messages, produce and read topics, wait for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.envelope import Entity, Envelope
from hub.broker.kafka import end_offsets


def customer_env(
    i: int,
    *,
    version: int = 1,
    system: str = "crm",
    name: str | None = None,
    message_id: uuid.UUID | None = None,
) -> Envelope:
    return Envelope(
        message_id=message_id or uuid.uuid4(),
        entity=Entity.customer,
        source_system=system,
        source_id=f"C{i:05d}",
        source_version=version,
        source_ts=datetime(2026, 11, 24, 8, 0, tzinfo=UTC),
        body={"kind": "organization", "name": name or f"深圳市测试{i}有限公司"},
    )


async def produce(
    bootstrap: str,
    topic: str,
    items: list[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=8_000_000
    )
    await p.start()
    try:
        futs = [await p.send(topic, key=k, value=v, headers=headers) for k, v in items]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def produce_envs(bootstrap: str, topic: str, envs: list[Envelope]) -> None:
    await produce(bootstrap, topic, [(e.key.encode(), e.to_bytes()) for e in envs])


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Everything currently in the topic, all partitions."""
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await c.start()
    try:
        await c.topics()
        parts = c.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await end_offsets(c, tps)
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        out: list[Any] = []
        deadline = time.monotonic() + 20

        async def behind() -> bool:
            return any([await c.position(tp) < ends[tp] for tp in tps])

        while await behind() and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=300)
            for rs in batch.values():
                out.extend(rs)
        return out
    finally:
        await c.stop()


async def wait_until(
    cond: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")


def header(rec: Any, name: str) -> str | None:
    for k, v in rec.headers or ():
        if k == name:
            return bytes(v).decode()
    return None


class StatementCount:
    n = 0


@contextlib.contextmanager
def counting_statements(engine: Any) -> Iterator[StatementCount]:
    """Counts the SQL statements an async engine sends while the block runs (an
    executemany counts once)."""
    counted = StatementCount()

    def count(*_: Any) -> None:
        counted.n += 1

    from sqlalchemy import event

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
