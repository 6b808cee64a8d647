"""A simulator served by uvicorn on a real port, pushing its traffic to a hub webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from connectors.common.errors import Rejection
from connectors.common.sink import Outcome, Sink
from connectors.registry import build_connectors
from connectors.simulators import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[str, list[tuple[str, str, Any]]]]:
    """A stand-in for the hub's webhook endpoint that keeps what it is sent."""
    received: list[tuple[str, str, Any]] = []
    app = FastAPI()

    @app.post("/connectors/{system}/{entity}")
    async def webhook(system: str, entity: str, request: Request) -> dict[str, str]:
        received.append((system, entity, json.loads(await request.body())))
        return {"status": "accepted"}

    port = free_port()
    async with serving(app, port):
        yield f"http://127.0.0.1:{port}", received


async def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_simulator_pushes_its_traffic_to_the_hub(
    tmp_path: Path, hub: tuple[str, list[tuple[str, str, Any]]]
) -> None:
    hub_url, received = hub
    port = free_port()
    task = asyncio.create_task(
        serve(
            "crm",
            port=port,
            hub_url=hub_url,
            seed=7,
            rate=400,
            duplicates=0.3,
            db_path=tmp_path / "crm.sqlite",
        )
    )
    try:
        await wait_for(lambda: len(received) >= 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            stats = (await client.get("/_sim/stats")).json()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    crm = build_connectors()["crm"]
    assert {e for _, e, _ in received} == {"customer", "order"}  # opportunities stay home
    for system, entity, record in received:
        assert system == "crm"
        [result] = crm.decode(entity, json.dumps(record, ensure_ascii=False).encode())
        assert not isinstance(result, Rejection), result.reason
    assert sum(stats["pushed"].values()) >= 30
    assert stats["records"]["customer"] >= 1


async def test_timeouts_against_a_slow_system_are_transient(tmp_path: Path) -> None:
    from connectors.oa.simulator import create_app

    app = create_app(tmp_path / "oa.sqlite")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    urge = {
        "urge_id": "U-1",
        "approval_id": "0010000001/00010",
        "origin_system": "hub",
        "level": 1,
        "channel": "email",
        "recipient": "副总经理",
        "text": "请审批请购单 0010000001，截止 2026-11-30。",
        "sequence": 1,
        "due_at": "2026-11-30T18:00:00+08:00",
    }
    async with serving(app, port), httpx.AsyncClient(base_url=base) as client:
        r = await client.post("/_sim/faults", json={"mode": "slow", "delay_s": 1.0, "count": 1})
        assert r.status_code == 200
        async with Sink(build_connectors()["oa"], base, timeout=0.2) as sink:
            slow = await sink.deliver("urge", urge, "urge-U-1")
            assert slow.outcome is Outcome.transient and "timeout" in slow.reason
            await asyncio.sleep(1.0)  # the slow request still lands, later
            again = await sink.deliver("urge", urge, "urge-U-1")
            assert again.outcome is Outcome.duplicate and again.local_id == "U-1"
        stats = (await client.get("/_sim/stats")).json()
    assert stats["records"]["reminder"] == 1
    assert stats["idempotency_collisions"] == {"reminder": 1}
