"""Identity resolution end to end on the embedded broker and a real store (SQLite, PostgreSQL):
canonical customers -> records flow -> changes.customer -> identity flow -> golden records,
golden.customer events; the admin API's merge, unmerge and review queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from contracts import topics
from contracts.customer import Customer
from contracts.envelope import Entity, Envelope
from contracts.material import Material
from flows.identity import flow as identity
from flows.identity.batch import InputRow, run_batch
from flows.identity.config import IdentityConfig
from flows.records import flow as records
from hub.api import golden as golden_api
from hub.api.admin import install
from hub.api.app import create_app
from hub.api.auth import Role, create_token
from hub.broker.embedded import free_port
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.admin_models import AuditEntry
from hub.store.identity_models import (
    BlockKeyCount,
    GoldenMember,
    GoldenRecord,
    IdentityEvent,
    ReviewItem,
)
from tests.helpers import produce_envs, read_topic, wait_until

pytestmark = pytest.mark.integration

HUAWEI = "914403001922038216"
OTHER = "91440300708461136T"  # a different valid credit code
CUSTOMERS = topics.canonical(Entity.customer)
GOLDEN = topics.golden(Entity.customer)
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def env(system: str, sid: str, body: dict[str, Any], version: int = 1) -> Envelope:
    Customer.model_validate(body)  # the test feeds only valid canonical bodies
    return Envelope(
        entity=Entity.customer,
        source_system=system,
        source_id=sid,
        source_version=version,
        source_ts=T0 + timedelta(minutes=version),
        body=body,
    )


def org(name: str, *codes: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "organization",
        "name": name,
        "identifiers": [{"scheme": "uscc", "value": c} for c in codes],
        **extra,
    }


@dataclass
class Running:
    hub: Hub
    url: str = ""
    app: FastAPI | None = None
    tokens: dict[str, str] | None = None

    async def count(self, stmt: Any) -> int:
        assert self.hub.sessions is not None
        async with self.hub.sessions() as s:
            return int(await s.scalar(stmt) or 0)

    async def rows(self, stmt: Any) -> list[Any]:
        assert self.hub.sessions is not None
        async with self.hub.sessions() as s:
            return list((await s.execute(stmt)).all())

    def client(self, role: str) -> httpx.AsyncClient:
        assert self.tokens is not None
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=30
        )

    async def members(self) -> dict[tuple[str, str], str]:
        rows = await self.rows(
            select(GoldenMember.source_system, GoldenMember.source_id, GoldenMember.golden_id)
        )
        return {(s, i): g for s, i, g in rows}

    async def drain(self) -> None:
        assert self.hub.relay is not None
        await self.hub.relay.drain()


@asynccontextmanager
async def identity_hub(
    broker: str,
    store_url: str,
    *,
    config: IdentityConfig | None = None,
    only_identity: bool = False,
    api: bool = False,
    **kw: Any,
) -> AsyncIterator[Running]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        topic_partitions=1,  # one partition: arrival order is input order
        port=port,
        **kw,
    )
    flows = [identity.spec(config)]
    if not only_identity:
        flows.insert(0, records.spec())
    hub = Hub(settings, flows=flows, serve_api=False)
    await hub.start()
    running = Running(hub)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    try:
        if api:
            app = install(create_app(hub))
            if not any(getattr(r, "path", None) == "/review" for r in app.routes):
                app.include_router(golden_api.router)  # until app.py includes it
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
                )
            )
            task = asyncio.create_task(server.serve())
            tokens: dict[str, str] = {}
            assert hub.sessions is not None
            async with hub.sessions() as s, s.begin():
                for role in Role:
                    _, tokens[role.value] = await create_token(s, f"t-{role.value}", role, "test")
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            assert server.started
            running = Running(hub, f"http://127.0.0.1:{port}", app, tokens)
        yield running
    finally:
        if server is not None and task is not None:
            server.should_exit = True
            await asyncio.gather(task, return_exceptions=True)
        await hub.stop()


async def golden_messages(broker: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(key, op, envelope) of everything on golden.customer."""
    out = []
    for rec in await read_topic(broker, GOLDEN):
        data = json.loads(rec.value)
        out.append((rec.key.decode() if rec.key else None, data["op"], data))
    return out


# --- one company typed twice ------------------------------------------------------------------


async def test_same_company_typed_in_crm_and_erp_becomes_one_golden_record(
    broker: str, store_url: str
) -> None:
    crm = env(
        "crm",
        "C-001",
        org(
            "深圳市华强电子有限公司",
            HUAWEI,
            status="successful",
            phones=["0755-2878 0808"],
            owner="张三",
        ),
    )
    erp = env(
        "erp",
        "100234",
        org(
            "深圳華強電子（集團）有限公司",  # Traditional, full-width brackets, group suffix
            HUAWEI,
            status="invalid",
            phones=["+86 755 28780808"],
            credit_limit="200000.00",
        ),
    )
    async with identity_hub(broker, store_url) as h:
        await produce_envs(broker, CUSTOMERS, [crm, erp])

        async def both_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 2

        await wait_until(both_linked, what="both records linked")
        await h.drain()
        members = await h.members()
        assert len(set(members.values())) == 1, members
        gid = members[("crm", "C-001")]
        active = await h.rows(select(GoldenRecord).where(GoldenRecord.status == "active"))
        assert len(active) == 1
        row = active[0][0]
        assert (row.golden_id, row.member_count, row.version) == (gid, 2, 2)
        assert row.record["status"] == "successful"  # CRM's, not ERP's
        assert row.record["credit_limit"] == "200000.00"  # ERP's
        assert row.record["phones"] == ["0755-2878 0808"]  # one number, spelled twice
        assert row.winners["status"]["message_id"] == str(crm.message_id)
        assert row.winners["credit_limit"]["message_id"] == str(erp.message_id)
        Customer.model_validate(row.record)
        kinds = await h.rows(select(IdentityEvent.kind, IdentityEvent.source_id))
        assert sorted(kinds) == [("merge", "100234"), ("upsert", "C-001")]
        [(erp_change,)] = await h.rows(
            select(GoldenMember.message_id).where(GoldenMember.source_id == "100234")
        )
    msgs = await golden_messages(broker)
    assert [op for _, op, _ in msgs] == ["upsert", "merge"], "one merge event"
    key, _, merged = msgs[1]
    assert key == gid and merged["source_id"] == gid and merged["source_system"] == "hub"
    assert "erp" in merged["trace"], "the sync flow must not echo ERP's change back to ERP"
    assert merged["causation_id"] is not None
    body = merged["body"]
    assert body["golden_id"] == gid
    assert body["members"] == [
        {"source_system": "crm", "source_id": "C-001"},
        {"source_system": "erp", "source_id": "100234"},
    ]
    assert body["winners"]["credit_limit"]["source_system"] == "erp"
    assert merged["source_version"] == 2  # the golden record's version
    why = body["evidence"]
    assert (why["decided_by"], why["action"]) == ("matcher", "merge")
    assert why["member"] == {"source_system": "erp", "source_id": "100234"}
    assert why["message_id"] == erp_change, "the message that linked ERP's record"
    assert why["score"] == 1.0 and "id_match" in why["flags"], "the credit code decided"
    decisive = [f for f in why["fields"] if f["field"] == "id"]
    assert decisive and decisive[0]["level"].startswith("exact"), why["fields"]
    assert "evidence" not in msgs[0][2]["body"], "a new record is no merge: nothing to explain"


async def test_same_name_with_different_valid_credit_codes_stays_two(
    broker: str, store_url: str
) -> None:
    a = env("crm", "C-1", org("华强电子有限公司", HUAWEI, phones=["0755-28780808"]))
    b = env("erp", "E-1", org("华强电子有限公司", OTHER, phones=["0755-28780808"]))
    async with identity_hub(broker, store_url) as h:
        await produce_envs(broker, CUSTOMERS, [a, b])

        async def both_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 2

        await wait_until(both_linked, what="both records linked")
        await h.drain()
        members = await h.members()
        assert len(set(members.values())) == 2
        evidence = await h.rows(
            select(IdentityEvent.evidence).where(IdentityEvent.source_id == "E-1")
        )
        assert "kept apart" in json.dumps(evidence[0][0], ensure_ascii=False)
        assert await h.count(select(func.count()).select_from(ReviewItem)) == 0
    assert [op for _, op, _ in await golden_messages(broker)] == ["upsert", "upsert"]


async def test_a_replayed_change_has_no_second_effect(broker: str, store_url: str) -> None:
    change = env("crm", "C-9", org("宏达机械有限公司", HUAWEI))
    other = env("erp", "E-9", org("华强电子有限公司", OTHER))
    update = env("crm", "C-9", org("宏达机械有限公司", HUAWEI, phones=["13800000009"]), 2)
    async with identity_hub(broker, store_url, only_identity=True) as h:
        changes = topics.changes(Entity.customer)
        await produce_envs(broker, changes, [change, change, other, change, update, update])

        async def all_seen() -> bool:
            return await h.count(select(func.count()).select_from(IdentityEvent)) >= 3

        await wait_until(all_seen, what="three identity events")
        await asyncio.sleep(0.5)
        await h.drain()
        assert await h.count(select(func.count()).select_from(IdentityEvent)) == 3
        assert await h.count(select(func.count()).select_from(GoldenMember)) == 2
        versions = await h.rows(select(GoldenRecord.name, GoldenRecord.version))
        assert sorted(versions) == [("华强电子有限公司", 1), ("宏达机械有限公司", 2)]
        assert h.hub.runners[0].metrics.duplicates == 3
    msgs = await golden_messages(broker)
    assert [m["source_version"] for _, _, m in msgs] == [1, 1, 2]
    assert msgs[-1][2]["body"]["phones"] == ["13800000009"]


async def test_a_part_typed_from_a_pdm_drawing_into_erp_is_one_golden_material(
    broker: str, store_url: str
) -> None:
    def part(system: str, sid: str, **body: Any) -> Envelope:
        Material.model_validate(body)
        return Envelope(
            entity=Entity.material, source_system=system, source_id=sid, source_ts=T0, body=body
        )

    erp = part("erp", "100023", code="100023", name="刀头组件", specification="M3x8", uom="PCS")
    pdm = part("pdm", "P-100023", code="100023", name="刀頭組件", specification="M3*8", uom="PCS")
    longer = part("erp", "100024", code="100024", name="刀头组件", specification="M3x10", uom="PCS")
    async with identity_hub(broker, store_url) as h:
        await produce_envs(broker, topics.canonical(Entity.material), [erp, pdm, longer])

        async def all_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 3

        await wait_until(all_linked, what="three parts resolved")
        await h.drain()
        members = await h.members()
        assert members[("erp", "100023")] == members[("pdm", "P-100023")]
        assert members[("erp", "100024")] != members[("erp", "100023")]
        review = await h.rows(select(ReviewItem.source_id, ReviewItem.candidate_id))
        assert review == [("100024", members[("erp", "100023")])], "M3x10 is not M3x8"
        record = (
            await h.rows(
                select(GoldenRecord.record).where(
                    GoldenRecord.golden_id == members[("erp", "100023")]
                )
            )
        )[0][0]
        assert (record["code"], record["name"]) == ("100023", "刀頭組件")  # name: PDM's
        Material.model_validate(record)
    ops = [
        m["op"] for m in (json.loads(r.value) for r in await read_topic(broker, "golden.material"))
    ]
    assert ops == ["upsert", "merge", "upsert"]


async def test_parts_under_other_numbers_of_one_system_stay_apart_in_streaming(
    broker: str, store_url: str
) -> None:
    # the demo's motor assemblies (decision 44): one name and spec, four PDM drawing numbers
    body = {"name": "电机组件", "specification": "直流电机 7000rpm", "uom": "PCE"}
    models = ("RS7100", "RS5200", "RS3300", "RS9900")
    envs = [
        Envelope(
            entity=Entity.material,
            source_system=system,
            source_id=code,
            source_ts=T0,
            body={**body, "code": code},
        )
        for system, code in [("pdm", f"{m}-20-000") for m in models] + [("erp", "2000000017")]
    ]
    async with identity_hub(broker, store_url) as h:
        await produce_envs(broker, topics.canonical(Entity.material), envs)

        async def all_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 5

        await wait_until(all_linked, what="five parts resolved")
        await h.drain()
        members = await h.members()
        assert len({members[("pdm", f"{m}-20-000")] for m in models}) == 4
        first = members[("pdm", "RS7100-20-000")]
        review = await h.rows(select(ReviewItem.source_id, ReviewItem.candidate_id))
        assert ("RS5200-20-000", first) in review
        profile = (
            await h.rows(select(GoldenRecord.profile).where(GoldenRecord.golden_id == first))
        )[0][0]
        assert ["pdm", "RS710020000"] in profile["system_codes"]


async def test_an_erp_material_joins_the_pdm_part_its_drawing_number_names(
    broker: str, store_url: str
) -> None:
    # decision 45: the ERP keeps the PDM drawing number in ZEINR, canonical
    # attributes.drawing_no (connectors/erp/mapping.py); name and spec alone cannot tell the
    # four motor assemblies apart, the drawing number does
    body = {"name": "电机组件", "specification": "直流电机 7000rpm", "uom": "PCE"}
    models = ("RS7100", "RS5200", "RS3300", "RS9900")

    def env(system: str, sid: str, code: str, drawing: str) -> Envelope:
        record = {**body, "code": code, "attributes": {"drawing_no": drawing}}
        Material.model_validate(record)
        return Envelope(
            entity=Entity.material, source_system=system, source_id=sid, source_ts=T0, body=record
        )

    erp = env("erp", "2000000017", "2000000017", "RS5200-20-000")
    envs = [env("pdm", f"{m}-20-000", f"{m}-20-000", f"{m}-20-000") for m in models]
    async with identity_hub(broker, store_url) as h:
        await produce_envs(broker, topics.canonical(Entity.material), [*envs, erp])

        async def all_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 5

        await wait_until(all_linked, what="five parts resolved")
        await h.drain()
        members = await h.members()
        part = members[("pdm", "RS5200-20-000")]
        assert members[("erp", "2000000017")] == part
        assert len({members[("pdm", f"{m}-20-000")] for m in models}) == 4
        review = await h.rows(select(ReviewItem.source_id))
        assert ("2000000017",) not in review
        profile = (
            await h.rows(select(GoldenRecord.profile).where(GoldenRecord.golden_id == part))
        )[0][0]
        assert ["erp", "2000000017"] in profile["system_codes"]
        assert ["pdm", "RS520020000"] in profile["system_codes"]


# --- streaming gives the batch command's clusters ----------------------------------------------

CN_TYPE = {
    "客户": "customer",
    "供应商": "supplier",
    "分销商": "distributor",
    "代理商": "agent",
    "合作伙伴": "partner",
    "个人用户": "individual",
}
CN_STATUS = {
    "无效": "invalid",
    "潜在": "potential",
    "成功": "successful",
    "试点": "pilot",
    "典型": "reference",
}


def generated(n: int, seed: int) -> list[InputRow]:
    """The lead's labelled generator, mapped to valid canonical bodies (its type and status
    are the Chinese display values)."""
    gen = pytest.importorskip("bench.data.gen_customers")
    rows, _truth = gen.generate(n, seed, "cn")
    out = []
    for row in rows:
        record = dict(row["record"])
        record["type"] = CN_TYPE.get(record.get("type"), record.get("type"))
        record["status"] = CN_STATUS.get(record.get("status"), record.get("status"))
        body = Customer.model_validate(record).model_dump(mode="json")
        out.append(InputRow(row["source_system"], row["source_id"], body))
    return out


async def test_streaming_clusters_equal_batch_clusters(broker: str, store_url: str) -> None:
    # a small cap and few candidates, so that hot keys and candidate ranking both matter
    config = IdentityConfig(block_cap=5, max_candidates=3)
    rows = generated(360, seed=11)
    batch = run_batch("customer", rows, config, model=identity.default_model("customer", config))
    expected = {(r["source_system"], r["source_id"]): r["cluster_id"] for r in batch.rows}
    assert len(set(expected.values())) < len(rows) - 20, "the input must hold duplicates"
    envs = [env(r.source_system, r.source_id, dict(r.record)) for r in rows]
    async with identity_hub(broker, store_url, config=config, batch_size=40) as h:
        await produce_envs(broker, CUSTOMERS, envs)

        async def all_linked() -> bool:
            n = await h.count(select(func.count()).select_from(GoldenMember))
            return n == len(rows)

        await wait_until(all_linked, timeout=90, what="every record linked")
        streamed = await h.members()
        hot = await h.count(
            select(func.count())
            .select_from(BlockKeyCount)
            .where(BlockKeyCount.n > config.block_cap)
        )
        reviews = await h.count(select(func.count()).select_from(ReviewItem))
    assert hot > 0, "the test must exercise hot keys"
    assert streamed == expected
    assert reviews == batch.actions["review"]


# --- operators: merge, unmerge, review ----------------------------------------------------------


async def test_merge_then_unmerge_through_the_api_restores_two_golden_records(
    broker: str, store_url: str
) -> None:
    a = env("crm", "C-1", org("华强电子有限公司", phones=["0755-28780808"], status="pilot"))
    b = env("erp", "E-1", org("宏达机械有限公司", credit_limit="5000.00"))
    async with identity_hub(broker, store_url, api=True) as h:
        await produce_envs(broker, CUSTOMERS, [a, b])

        async def both_linked() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 2

        await wait_until(both_linked, what="two golden records")
        before = await h.members()
        g1, g2 = before[("crm", "C-1")], before[("erp", "E-1")]
        assert g1 != g2
        async with h.client("viewer") as viewer, h.client("operator") as op:
            found = (await viewer.get("/golden/customer", params={"q": "華強"})).json()
            assert [i["golden_id"] for i in found["items"]] == [g1]
            r = await viewer.post("/golden/customer/merge", json={"golden_ids": [g1, g2]})
            assert r.status_code == 403

            r = await op.post("/golden/customer/merge", json={"golden_ids": [g2, g1]})
            assert r.status_code == 200, r.text
            merged = await h.members()
            assert set(merged.values()) == {g1}, "the older golden id survives"
            detail = (await viewer.get(f"/golden/customer/{g1}")).json()
            assert detail["record"]["status"] == "pilot"
            assert detail["record"]["credit_limit"] == "5000.00"
            assert detail["winners"]["credit_limit"]["source_id"] == "E-1"
            retired = (await viewer.get(f"/golden/customer/{g2}")).json()
            assert (retired["status"], retired["merged_into"]) == ("retired", g1)

            # the flow keeps working on top of the operator's change (version check)
            b2 = env("erp", "E-1", org("宏达机械有限公司", credit_limit="8000.00"), version=2)
            await produce_envs(broker, CUSTOMERS, [b2])

            async def updated() -> bool:
                d = (await viewer.get(f"/golden/customer/{g1}")).json()
                return bool(d["record"].get("credit_limit") == "8000.00")

            await wait_until(updated, what="ERP's update on the merged record")

            r = await op.post(
                f"/golden/customer/{g1}/unmerge",
                json={"source_system": "erp", "source_id": "E-1", "reason": "not the same"},
            )
            assert r.status_code == 200, r.text
            assert sorted(r.json()["golden_ids"]) == sorted([g1, g2])
            assert await h.members() == before, "unmerge restores both golden ids"
            detail = (await viewer.get(f"/golden/customer/{g1}")).json()
            assert [m["source_id"] for m in detail["members"]] == ["C-1"]
            assert "credit_limit" not in detail["record"]
            kinds = [e["kind"] for e in detail["events"]]  # newest first
            assert kinds == ["unmerge", "upsert", "merge", "upsert"], kinds
            assert {e["message_id"] for e in detail["lineage"]} == {str(a.message_id)}
            split = (await viewer.get(f"/golden/customer/{g2}")).json()
            assert split["status"] == "active" and split["record"]["credit_limit"] == "8000.00"
            assert {e["message_id"] for e in split["lineage"]} == {
                str(b.message_id),
                str(b2.message_id),
            }
            r = await op.post(
                f"/golden/customer/{g1}/unmerge",
                json={"source_system": "crm", "source_id": "C-1"},
            )
            assert r.status_code == 409, "a single member cannot be split off"
        await h.drain()
        actions = await h.rows(select(AuditEntry.action, AuditEntry.status))
        assert ("golden.merge", 200) in actions and ("golden.unmerge", 200) in actions
        assert ("golden.merge", 403) in actions
    ops = [(key, op) for key, op, _ in await golden_messages(broker)]
    assert ops[:2] == [(g1, "upsert"), (g2, "upsert")]
    assert (g1, "merge") in ops and (g2, "merge") in ops
    assert ops[-2:] == [(g1, "unmerge"), (g2, "unmerge")]
    bodies = [(key, op, m["body"]) for key, op, m in await golden_messages(broker)]
    manual = [b["evidence"] for key, op, b in bodies if op == "merge" and key == g1]
    assert manual and manual[0]["action"] == "merge" and manual[0]["merged_from"] == [g2]
    assert manual[0]["decided_by"] == "t-operator", "the name of the token that merged"
    split = [b["evidence"] for _, op, b in bodies if op == "unmerge"]
    assert len(split) == 2 and all(e["reason"] == "not the same" for e in split)
    assert split[0]["member"] == {"source_system": "erp", "source_id": "E-1"}


async def test_review_queue_accept_and_reject(broker: str, store_url: str) -> None:
    # the same name and nothing else to go on: between the thresholds
    pairs = [
        (env("crm", "C-1", org("同名贸易有限公司")), env("erp", "E-1", org("同名贸易有限公司"))),
        (env("crm", "C-2", org("重名实业有限公司")), env("drp", "D-2", org("重名实业有限公司"))),
    ]
    async with identity_hub(broker, store_url, api=True) as h:
        await produce_envs(broker, CUSTOMERS, [e for p in pairs for e in p])

        async def queued() -> bool:
            return await h.count(select(func.count()).select_from(GoldenMember)) == 4

        await wait_until(queued, what="four records resolved")
        before = await h.members()
        assert len(set(before.values())) == 4
        async with h.client("viewer") as viewer, h.client("operator") as op:
            page = (await viewer.get("/review")).json()
            assert page["total"] == 2
            first, second = page["items"]
            assert first["source_id"] == "E-1" and first["candidate_id"] == before[("crm", "C-1")]
            assert first["evidence"]["evidence"], "field evidence is listed"
            assert first["candidate_name"] == "同名贸易有限公司"

            r = await op.post(f"/review/{first['id']}/accept", json={"reason": "same buyer"})
            assert r.status_code == 200, r.text
            assert r.json()["review"]["status"] == "accepted"
            r = await op.post(f"/review/{second['id']}/reject")
            assert r.status_code == 200 and r.json()["review"]["status"] == "rejected"
            assert (await op.post(f"/review/{second['id']}/accept")).status_code == 409
            assert (await viewer.get("/review")).json()["total"] == 0
        after = await h.members()
        assert after[("erp", "E-1")] == after[("crm", "C-1")] == before[("crm", "C-1")]
        assert after[("drp", "D-2")] != after[("crm", "C-2")]
        active = await h.count(
            select(func.count()).select_from(GoldenRecord).where(GoldenRecord.status == "active")
        )
        assert active == 3
