"""Sync flows end to end on the embedded broker, a real store and real simulators.

A CRM customer travels canonical -> records -> identity -> golden -> sync -> ERP's API; an
order for it that arrives first is parked, released when ERP knows the customer, lands in ERP
with ERP's customer number, is credit-checked, and ERP's status goes back to the CRM.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from hub.delivery import xref
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.delivery_models import Delivery
from hub.store.identity_models import GoldenRecord
from hub.store.sync_models import Parked, SyncOrder
from hub.store.urge_models import Approval
from tests.conftest import AUTH, TEST_TOKEN
from tests.helpers import produce, read_topic, wait_until
from tests.integration.test_delivery import Sim, free_port, simulator

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def env(entity: Entity, system: str, sid: str, body: dict[str, Any], version: int = 1) -> Envelope:
    return Envelope(
        entity=entity,
        op=Op.upsert,
        source_system=system,
        source_id=sid,
        source_version=version,
        source_ts=WHEN.replace(minute=version),
        body=body,
    )


def customer(name: str, credit: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "organization", "name": name, **extra}
    if credit is not None:
        body["credit_limit"] = credit
    return body


def order(no: str, cust: str, material: str, qty: str = "50", price: str = "100") -> dict[str, Any]:
    return {
        "order_no": no,
        "customer_ref": cust,
        "order_date": date(2026, 11, 24).isoformat(),
        "lines": [
            {
                "line_no": 1,
                "material_ref": material,
                "quantity": qty,
                "uom": "PCS",
                "unit_price": price,
            }
        ],
    }


async def send(broker: str, *envs: Envelope) -> None:
    for e in envs:
        await produce(broker, topics.canonical(e.entity), [(e.key.encode(), e.to_bytes())])


@contextlib.asynccontextmanager
async def hub_with(broker: str, store_url: str, sims: list[Sim], **kw: Any) -> AsyncIterator[Hub]:
    targets = ",".join(f"{s.system}={s.url}" for s in sims)
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        topic_partitions=3,
        poll_timeout_ms=100,
        delivery_targets=targets,
        delivery_backoff_initial_ms=100,
        delivery_backoff_max_ms=400,
        delivery_poll_interval_ms=100,
        admin_token=TEST_TOKEN,
        host="127.0.0.1",
        port=free_port(),
        **kw,
    )
    hub = Hub(settings, run_urge_scheduler=False)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def topic_items(broker: str, topic: str, n: int = 1) -> list[bytes]:
    found: list[bytes] = []

    async def arrived() -> bool:
        found[:] = [m.value for m in await read_topic(broker, topic)]
        return len(found) >= n

    await wait_until(arrived, 20, f"{n} message(s) on {topic}")
    return found


async def queued(hub: Hub, system: str, n: int = 1) -> list[bytes]:
    """What the hub addressed to ``system``, in order: the flows queue it for delivery in
    their own transactions (decision 54), so it is read from the delivery queue, not from
    ``outbound.<system>``."""
    found: list[bytes] = []

    async def arrived() -> bool:
        async with hub.sessions() as s:  # type: ignore[misc]
            rows = await s.scalars(
                select(Delivery.envelope).where(Delivery.system == system).order_by(Delivery.id)
            )
            found[:] = [r.encode("utf-8") for r in rows]
        return len(found) >= n

    await wait_until(arrived, 20, f"{n} message(s) queued for {system}")
    return found


async def erp_count(erp: Sim, n: int) -> bool:
    return int((await erp.stats())["created"].get("order", 0)) == n


async def records(sim: Sim, path: str) -> list[dict[str, Any]]:
    r = await sim.client.get(path, params={"limit": 1000})
    r.raise_for_status()
    data = r.json()
    items = data["items"] if isinstance(data, dict) else data
    return [i.get("record", i) for i in items]


async def test_customer_fans_out_order_parks_then_lands_with_erp_keys(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    async with (
        simulator("crm", tmp_path) as crm,
        simulator("erp", tmp_path) as erp,
        hub_with(broker, store_url, [crm, erp]) as hub,
    ):
        assert hub.sessions is not None
        # ERP publishes its material; CRM orders quote ERP material numbers.
        await send(
            broker,
            env(
                Entity.material,
                "erp",
                "4000000001",
                {"code": "4000000001", "name": "控制柜", "uom": "PCS"},
            ),
        )

        async def material_known() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                return bool(await xref.holders(s, [("material", "erp", "4000000001")]))

        await wait_until(material_known, 30, "ERP's material known to the hub")
        # The order comes before its customer: parked, never sent with a wrong key.
        await send(
            broker, env(Entity.order, "crm", "SO0001", order("SO0001", "KH000001", "4000000001"))
        )

        async def parked() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                return bool(list(await s.scalars(select(Parked))))

        await wait_until(parked, 30, "the order parked")
        assert (await erp.stats())["received"].get("order", 0) == 0
        api = f"http://127.0.0.1:{hub.settings.port}"
        async with httpx.AsyncClient(base_url=api, headers=AUTH, timeout=10) as c:
            assert (await c.get("/parked", headers={"Authorization": ""})).status_code == 401
            page = (await c.get("/parked", params={"target": "erp"})).json()
            assert page["total"] == 1 and page["overdue"] == 0
            item = page["items"][0]
            assert (item["key"], item["waiting_on"]) == ("crm:SO0001", ["customer:crm:KH000001"])
            assert "erp does not know yet" in item["reason"] and not item["overdue"]
            one = (await c.get(f"/parked/{item['id']}")).json()
            assert one["envelope"]["body"]["customer_ref"] == "KH000001"
            assert (await c.get("/parked", params={"overdue": "true"})).json()["total"] == 0
            assert "eai_parked_messages 1.0" in (await c.get("/metrics")).text

        await send(
            broker,
            env(
                Entity.customer,
                "crm",
                "KH000001",
                customer("苏州市恒达机电有限公司", credit="999999"),
            ),
        )

        async def erp_has_order() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                return await xref.local_id(s, "order", "crm:SO0001", "erp") is not None

        await wait_until(erp_has_order, 40, "the order delivered to ERP")
        async with hub.sessions() as s:
            gid = await xref.key_for(s, "customer", "crm", "KH000001")
            assert gid is not None
            kunnr = await xref.local_id(s, "customer", gid, "erp")
            vbeln = await xref.local_id(s, "order", "crm:SO0001", "erp")
            row = await s.scalar(select(SyncOrder).where(SyncOrder.key == "crm:SO0001"))
            assert not list(await s.scalars(select(Parked)))
        assert kunnr and vbeln and row is not None
        # CRM owns the customer record: CRM got nothing back (no echo), ERP got it once.
        assert (await crm.stats())["created"].get("customer", 0) == 0
        assert (await erp.stats())["created"]["customer"] == 1
        erp_orders = await records(erp, "/api/sales-orders")
        assert len(erp_orders) == 1, erp_orders
        assert erp_orders[0]["KUNNR"] == kunnr
        assert erp_orders[0]["ITEMS"][0]["MATNR"] == "4000000001"
        # The CRM's credit limit is not taken (ERP owns it): the order went unflagged.
        assert not row.credit_flagged and row.customer_key == gid

        # ERP publishes the record the hub created there, with its credit limit: it links to
        # the same golden record (no second one, no review) and the limit survives.
        erp_view = customer("苏州市恒达机电有限公司", credit="1000")
        await send(broker, env(Entity.customer, "erp", kunnr, erp_view))

        async def limit_known() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                return await xref.key_for(s, "customer", "erp", kunnr) == gid and bool(
                    await s.scalar(
                        select(GoldenRecord.record["credit_limit"].as_string()).where(
                            GoldenRecord.golden_id == gid
                        )
                    )
                )

        await wait_until(limit_known, 30, "ERP's credit limit on the golden record")
        async with hub.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(GoldenRecord)) == 2
        # 50 x 100 = 5000 on top of 5000 open against a limit of 1000: flagged, approval asked.
        await send(
            broker, env(Entity.order, "crm", "SO0002", order("SO0002", "KH000001", "4000000001"))
        )

        async def flagged() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                row = await s.scalar(select(SyncOrder).where(SyncOrder.key == "crm:SO0002"))
                return row is not None and row.credit_flagged

        await wait_until(flagged, 30, "the second order flagged by the credit check")
        await wait_until(lambda: erp_count(erp, 2), 30, "the flagged order in ERP too")
        req = Envelope.from_bytes((await topic_items(broker, topics.canonical(Entity.approval)))[0])
        assert req.body["type"] == "credit_overrun" and req.body["subject_ref"] == "crm:SO0002"
        assert float(req.body["amount"]) == 5000.0

        async def watched() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                row = await s.scalar(select(Approval).where(Approval.type == "credit_overrun"))
                return row is not None and row.approval_id == "credit:crm:SO0002"

        await wait_until(watched, 30, "the urge flow watching the credit approval")

        # ERP ships it: the status goes back to the CRM order the clerk typed.
        typed = {
            "order_no": "SO0001",
            "cust_no": "KH000001",
            "order_date": "2026/11/24",
            "status": "20",
        }
        r = await crm.client.post("/api/orders", json=typed)
        assert r.status_code == 201, r.text
        shipped = order("SO0001", kunnr, "4000000001") | {"status": "shipped"}
        await send(broker, env(Entity.order, "erp", vbeln, shipped, version=2))

        async def status_back() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                row = await s.scalar(select(SyncOrder).where(SyncOrder.key == "crm:SO0001"))
                return row is not None and row.status == "shipped"

        await wait_until(status_back, 30, "ERP's status recorded for the CRM order")
        back: list[Envelope] = []

        async def status_sent() -> bool:
            out = [Envelope.from_bytes(v) for v in await queued(hub, "crm", 0)]
            back[:] = [b for b in out if b.entity is Entity.order]
            return bool(back)

        await wait_until(status_sent, 20, "the status queued for the CRM")
        assert [(b.op, b.body["status"], b.body["order_no"]) for b in back] == [
            (Op.status, "shipped", "SO0001")
        ]

        async def crm_shipped() -> bool:
            r = await crm.client.get("/api/orders/SO0001")
            return r.status_code == 200 and r.json()["record"]["status"] != "20"

        await wait_until(crm_shipped, 30, "the CRM order showing ERP's status")


USCC = "91330200MA2H000017"


async def test_a_re_entered_duplicate_and_a_deleted_record_are_quarantined_not_destroyed(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    async with (
        simulator("erp", tmp_path) as erp,
        simulator("drp", tmp_path) as drp,
        hub_with(broker, store_url, [erp, drp]) as hub,
    ):
        assert hub.sessions is not None
        company = customer(
            "宁波市甬江精密机械有限公司", identifiers=[{"scheme": "uscc", "value": USCC}]
        )
        await send(broker, env(Entity.customer, "crm", "KH000010", company))
        dealer = customer(
            "温州市瓯海阀门经销部",
            type="distributor",
            addresses=[{"country": "CN", "province": "浙江省", "city": "温州市"}],
        )
        await send(broker, env(Entity.customer, "crm", "KH000011", dealer))
        ids: dict[str, str] = {}

        async def fanned_out() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                for sid in ("KH000010", "KH000011"):
                    gid = await xref.key_for(s, "customer", "crm", sid)
                    if gid is None:
                        return False
                    known = await xref.systems_of(s, "customer", gid)
                    want = {"erp", "drp"} if sid == "KH000011" else {"erp"}
                    if not want <= set(known):
                        return False
                    ids.update({f"{sid}.{k}": v for k, v in known.items()})
                    ids[f"{sid}.gid"] = gid
            return True

        await wait_until(fanned_out, 40, "both customers in ERP, the distributor in DRP")
        assert "KH000010.drp" not in ids, "the DRP keeps distributors only"

        # An ERP clerk types the first company again; the ERP pushes it to the hub.
        typed = {"KTOKD": "Z001", "NAME1": "宁波甬江精密机械有限公司", "STCEG": USCC}
        r = await erp.client.post("/api/customers", json=typed)
        assert r.status_code == 201, r.text
        clerk_id = r.json()["local_id"]
        api = f"http://127.0.0.1:{hub.settings.port}"
        async with httpx.AsyncClient(base_url=api, headers=AUTH, timeout=10) as c:
            pushed = await c.post("/connectors/erp/customer", json=r.json()["record"])
            assert pushed.status_code == 202, pushed.text

        async def blocked(sim: Sim, local_id: str, field: str, value: str) -> bool:
            got = await sim.client.get(
                f"/api/{'customers' if sim.system == 'erp' else 'dealers'}/{local_id}"
            )
            return got.status_code == 200 and got.json()["record"].get(field) == value

        await wait_until(
            lambda: blocked(erp, clerk_id, "SPERR", "X"), 40, "the re-entered copy blocked in ERP"
        )
        assert await blocked(erp, ids["KH000010.erp"], "SPERR", ""), "the first copy stays active"
        async with hub.sessions() as s:
            assert await xref.key_for(s, "customer", "erp", clerk_id) != ids["KH000010.gid"]
            assert (
                await xref.local_id(s, "customer", ids["KH000010.gid"], "erp")
                == ids["KH000010.erp"]
            )
        stats = await erp.stats()
        assert stats["records"]["customer"] == 3, "two made by the hub, one by the clerk"
        assert stats["duplicate_records"]["customer"] == 0

        # The clerk edits the frozen copy (and so unfreezes it): frozen again.
        edited = {**typed, "KUNNR": clerk_id, "SPERR": "", "TELF1": "0574-87654321"}
        r = await erp.client.put(f"/api/customers/{clerk_id}", json=edited)
        assert r.status_code == 200, r.text
        assert await blocked(erp, clerk_id, "SPERR", "")
        async with httpx.AsyncClient(base_url=api, headers=AUTH, timeout=10) as c:
            pushed = await c.post("/connectors/erp/customer", json=r.json()["record"])
            assert pushed.status_code == 202, pushed.text
        await wait_until(
            lambda: blocked(erp, clerk_id, "SPERR", "X"), 40, "the edited copy frozen again"
        )

        # The second customer is deleted in the CRM: frozen in ERP and DRP, never removed.
        gone = Envelope(
            entity=Entity.customer,
            op=Op.delete,
            source_system="crm",
            source_id="KH000011",
            source_version=2,
            source_ts=WHEN.replace(minute=2),
            body={"reason": "客户注销"},
        )
        await send(broker, gone)
        await wait_until(
            lambda: blocked(erp, ids["KH000011.erp"], "SPERR", "X"), 40, "quarantined in ERP"
        )
        await wait_until(
            lambda: blocked(drp, ids["KH000011.drp"], "status", "0"), 40, "quarantined in DRP"
        )
        assert (await erp.stats())["records"]["customer"] == 3, "nothing destroyed"


async def test_a_steward_merge_freezes_the_merged_copy_and_a_split_brings_it_back(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    async with (
        simulator("erp", tmp_path) as erp,
        hub_with(broker, store_url, [erp]) as hub,
    ):
        assert hub.sessions is not None
        await send(
            broker, env(Entity.customer, "crm", "KH000020", customer("嘉兴市南湖纺织有限公司"))
        )
        await send(broker, env(Entity.customer, "crm", "KH000021", customer("金华市婺城五金商行")))
        ids: dict[str, str] = {}

        async def created() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                for sid in ("KH000020", "KH000021"):
                    gid = await xref.key_for(s, "customer", "crm", sid)
                    lid = gid and await xref.local_id(s, "customer", gid, "erp")
                    if not lid:
                        return False
                    ids[sid], ids[f"{sid}.erp"] = gid, lid
            return True

        await wait_until(created, 40, "both customers created in ERP")

        async def sperr(local_id: str, value: str) -> bool:
            got = await erp.client.get(f"/api/customers/{local_id}")
            return got.status_code == 200 and got.json()["record"].get("SPERR") == value

        api = f"http://127.0.0.1:{hub.settings.port}"
        async with httpx.AsyncClient(base_url=api, headers=AUTH, timeout=10) as c:
            r = await c.post(
                "/golden/customer/merge",
                json={"golden_ids": [ids["KH000020"], ids["KH000021"]], "into": ids["KH000020"]},
            )
            assert r.status_code == 200, r.text
            await wait_until(
                lambda: sperr(ids["KH000021.erp"], "X"), 40, "the merged-away copy frozen in ERP"
            )
            assert await sperr(ids["KH000020.erp"], ""), "the survivor's copy stays active"
            got = (await erp.client.get(f"/api/customers/{ids['KH000021.erp']}")).json()
            assert got["record"]["NAME1"] == "金华市婺城五金商行", "frozen, not overwritten"

            r = await c.post(
                f"/golden/customer/{ids['KH000020']}/unmerge",
                json={"source_system": "crm", "source_id": "KH000021"},
            )
            assert r.status_code == 200, r.text
            await wait_until(
                lambda: sperr(ids["KH000021.erp"], ""), 40, "the split-off copy active again"
            )
        assert await sperr(ids["KH000020.erp"], "")
        stats = await erp.stats()
        assert stats["records"]["customer"] == 2, "no copy created or destroyed by merge/split"
        async with hub.sessions() as s:
            assert await xref.key_for(s, "customer", "crm", "KH000021") == ids["KH000021"]
