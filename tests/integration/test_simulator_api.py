"""Simulator native API: idempotency keys, duplicates, failure injection, read-back.

Driven in process through httpx's ASGI transport and the real outbound Sink, so what is tested
is the pair the hub will use: canonical record -> native -> HTTP -> the system's database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from connectors.common.sink import Outcome, Sink
from connectors.erp.simulator import create_app
from connectors.registry import build_connectors

CUSTOMER: dict[str, Any] = {
    "kind": "organization",
    "name": "宁波市鑫源电器有限公司",
    "identifiers": [{"scheme": "uscc", "value": "91330200MA2H000017"}],
    "type": "distributor",
    "status": "successful",
    "addresses": [{"type": "office", "country": "CN", "province": "浙江省", "city": "宁波市",
                   "street": "人民路88号", "postcode": "315000"}],
    "phones": ["0574-87654321"],
    "credit_limit": "500000.00",
}  # fmt: skip


@pytest.fixture
async def erp(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Sink]]:
    app = create_app(tmp_path / "erp.sqlite", seed=1)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp")
    sink = Sink(build_connectors()["erp"], "http://erp", client=client)
    yield app, client, sink
    await client.aclose()
    app.state.store.close()


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/_sim/stats")
    assert r.status_code == 200
    return dict(r.json())


async def fault(client: httpx.AsyncClient, **body: Any) -> None:
    r = await client.post("/_sim/faults", json=body)
    assert r.status_code == 200, r.text


async def test_create_returns_local_id_and_repeated_key_is_a_counted_collision(erp: Any) -> None:
    _, client, sink = erp
    first = await sink.deliver("customer", CUSTOMER, "k-1")
    assert first.outcome is Outcome.delivered and first.local_id == "0000500000"
    again = await sink.deliver("customer", CUSTOMER, "k-1")
    assert again.outcome is Outcome.duplicate and again.local_id == first.local_id
    s = await stats(client)
    assert s["created"] == {"customer": 1}
    assert s["idempotency_collisions"] == {"customer": 1}
    assert s["records"]["customer"] == 1 and s["duplicate_records"]["customer"] == 0
    stored = (await client.get(f"/api/customers/{first.local_id}")).json()["record"]
    assert stored["NAME1"] == "宁波市鑫源电器有限公司" and stored["KTOKD"] == "Z002"
    assert stored["KUNNR"] == first.local_id


async def test_key_reused_with_other_payload_is_refused(erp: Any) -> None:
    _, client, sink = erp
    await sink.deliver("customer", CUSTOMER, "k-2")
    other = await sink.deliver("customer", dict(CUSTOMER, name="别的公司"), "k-2")
    assert other.outcome is Outcome.permanent and other.status_code == 422
    assert "different payload" in other.reason
    assert (await stats(client))["idempotency_mismatches"] == {"customer": 1}


async def test_same_record_without_key_protection_is_counted_as_duplicate(erp: Any) -> None:
    _, client, sink = erp
    await sink.deliver("customer", CUSTOMER, "k-3")
    await sink.deliver("customer", CUSTOMER, "k-4")  # a hub that lost its key would do this
    s = await stats(client)
    assert s["duplicates_received"] == {"customer": 1}
    assert s["duplicate_records"]["customer"] == 1


async def test_existing_number_is_a_duplicate_not_a_second_record(erp: Any) -> None:
    _, client, _ = erp
    record = {"KUNNR": "0000100001", "KTOKD": "Z001", "NAME1": "华丰电器"}
    assert (await client.post("/api/customers", json=record)).status_code == 201
    r = await client.post("/api/customers", json=record)
    assert r.status_code == 409 and r.json()["local_id"] == "0000100001"
    assert (await stats(client))["duplicates_received"] == {"customer": 1}


async def test_update_and_read_back_changes(erp: Any) -> None:
    _, client, sink = erp
    created = await sink.deliver("customer", CUSTOMER, "k-5")
    updated = await sink.deliver(
        "customer", dict(CUSTOMER, credit_limit="800000.00"), "k-6", local_id=created.local_id
    )
    assert updated.outcome is Outcome.delivered and updated.status_code == 200
    missing = await sink.deliver("customer", CUSTOMER, "k-7", local_id="0000999999")
    assert missing.outcome is Outcome.permanent and missing.status_code == 404
    changes = (await client.get("/api/customers", params={"since": 0})).json()
    [item] = changes["items"]
    assert item["record"]["KLIMK"] == "800,000.00"
    assert (await client.get("/api/customers", params={"since": changes["next"]})).json()[
        "items"
    ] == []


async def test_native_validation_names_the_field(erp: Any) -> None:
    _, client, _ = erp
    r = await client.post("/api/customers", json={"KTOKD": "Z001", "NAME1": "名" * 41})
    assert r.status_code == 422
    assert r.json()["field"] == "NAME1" and "at most 40" in r.json()["rule"]


async def test_down_answers_503_to_everything_but_sim_routes(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="down")
    result = await sink.deliver("customer", CUSTOMER, "k-8")
    assert result.outcome is Outcome.transient and result.status_code == 503
    assert (await client.get("/api/customers")).status_code == 503
    assert (await client.get("/_sim/faults")).json()["mode"] == "down"
    await fault(client, mode="none")
    retried = await sink.deliver("customer", CUSTOMER, "k-8")
    assert retried.outcome is Outcome.delivered
    s = await stats(client)
    assert s["created"] == {"customer": 1} and s["faults"]["down"] == 2


async def test_error5xx_before_commit_stores_nothing(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="error5xx", count=1)
    failed = await sink.deliver("customer", CUSTOMER, "k-9")
    assert failed.outcome is Outcome.transient and failed.status_code == 500
    assert (await stats(client))["records"]["customer"] == 0
    retried = await sink.deliver("customer", CUSTOMER, "k-9")  # the fault healed after 1
    assert retried.outcome is Outcome.delivered


async def test_error5xx_after_commit_then_retry_with_same_key_is_exactly_once(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="error5xx", after_commit=True, count=1)
    lost = await sink.deliver("customer", CUSTOMER, "k-10")
    assert lost.outcome is Outcome.transient
    retried = await sink.deliver("customer", CUSTOMER, "k-10")
    assert retried.outcome is Outcome.duplicate and retried.ok
    s = await stats(client)
    assert s["records"]["customer"] == 1 and s["duplicate_records"]["customer"] == 0
    assert s["idempotency_collisions"] == {"customer": 1}


async def test_double_answers_success_but_stores_twice(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="double", count=1)
    result = await sink.deliver("customer", CUSTOMER, "k-11")
    assert result.outcome is Outcome.delivered
    s = await stats(client)
    assert s["double_stored"] == {"customer": 1}
    assert s["records"]["customer"] == 2 and s["duplicate_records"]["customer"] == 1


async def test_slow_delays_then_serves(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="slow", delay_s=0.3, count=1)
    started = time.monotonic()
    result = await sink.deliver("customer", CUSTOMER, "k-12")
    assert result.outcome is Outcome.delivered
    assert time.monotonic() - started >= 0.3


async def test_faults_can_target_entities_and_be_rejected_when_unknown(erp: Any) -> None:
    _, client, sink = erp
    await fault(client, mode="down", entities=["material"])
    assert (await sink.deliver("customer", CUSTOMER, "k-13")).outcome is Outcome.delivered
    r = await client.post("/_sim/faults", json={"mode": "explode"})
    assert r.status_code == 422 and r.json()["field"] == "mode"


async def test_decision_from_oa_reaches_the_requisition_release_api(tmp_path: Path) -> None:
    app = create_app(tmp_path / "erp2.sqlite")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://erp")
    sink = Sink(build_connectors()["erp"], "http://erp", client=client)
    decision = {
        "approval_id": "0010000001/00010",
        "decision": "approved",
        "decided_by": "黄总",
        "decided_at": "2026-11-24T10:00:00+08:00",
    }
    result = await sink.deliver("approval", decision, "d-1")
    assert result.outcome is Outcome.delivered
    stored = (await client.get("/api/releases", params={"since": 0})).json()["items"][0]
    assert stored["record"]["REL_CODE"] == "A" and stored["local_id"] == "0010000001/00010"
    await client.aclose()
    app.state.store.close()
