"""The outage filter on aiokafka's loggers (decision 57): what passes, what is held back."""

from __future__ import annotations

import logging

import pytest

from hub.broker.outage import BrokerOutageLog

REFUSED = "Unable connect to node with id 111: [Errno 111] Connect call failed ('127.0.0.1', 9)"


def record(message: str, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_connection_failures_open_one_outage_and_everything_else_passes_while_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    gate = BrokerOutageLog("127.0.0.1:9", remind_s=30, settle_s=5, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="hub.broker.outage")
    # while up: other errors and anything below WARNING pass unchanged
    assert gate.filter(record("Unexpected error in fetcher routine")) is True
    assert gate.filter(record(REFUSED, logging.INFO)) is True
    # the first connection failure opens the outage: held back, one line instead
    assert gate.filter(record(REFUSED)) is False
    assert gate.filter(record("Unexpected error in fetcher routine")) is False
    assert all(gate.filter(record(REFUSED)) is False for _ in range(500))
    assert gate.filter(record("heartbeat", logging.DEBUG)) is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("Kafka broker unreachable at 127.0.0.1:9 since ")
    assert REFUSED in lines[0]
    now[0] += 31
    gate.remind()
    assert "still unreachable at 127.0.0.1:9" in caplog.records[-1].getMessage()
    assert "(31 s); 502 aiokafka messages held back" in caplog.records[-1].getMessage()
    gate.recovered()
    back = caplog.records[-1].getMessage()
    assert back.startswith("Kafka broker reachable again at 127.0.0.1:9 after 31 s")
    assert "502 aiokafka messages held back" in back
    # clients reconnecting just after: held back, no new outage
    now[0] += 2
    assert gate.filter(record(REFUSED)) is False
    assert gate.down_since is None and len(caplog.records) == 3
    # after the settling time a failure is a new outage
    now[0] += 5
    assert gate.filter(record(REFUSED)) is False
    assert gate.outages == 2 and len(caplog.records) == 4


async def test_the_probe_tells_reachable_from_refused() -> None:
    import asyncio

    from hub.broker.embedded import free_port

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await BrokerOutageLog(f"127.0.0.1:{free_port()},127.0.0.1:{port}").reachable()
    finally:
        server.close()
        await server.wait_closed()
    assert not await BrokerOutageLog(f"127.0.0.1:{port}").reachable()
