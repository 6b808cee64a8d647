"""Stopping a consumer that is still waiting for its group (hub.broker.kafka)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from hub.broker.kafka import stop_joining_consumer


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _JoinHeldByTheBroker:
    """``stop()`` waits on a JoinGroup the broker does not answer."""

    def __init__(self) -> None:
        self._fetcher = _Closable()
        self._client = _Closable()
        self.stop_cancelled = False

    async def stop(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stop_cancelled = True
            raise


async def test_a_held_join_is_given_up_and_the_connections_closed() -> None:
    consumer = _JoinHeldByTheBroker()
    started = time.monotonic()
    await stop_joining_consumer(consumer, 0.2)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert consumer.stop_cancelled
    assert consumer._fetcher.closed and consumer._client.closed


async def test_the_parts_closed_by_hand_are_named_as_aiokafka_names_them() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    try:
        assert consumer._fetcher is None  # before start(); a Fetcher after it
        assert callable(consumer._client.close)
    finally:
        await consumer.stop()
