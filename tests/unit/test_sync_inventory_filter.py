"""The DRP gets the ERP stock of what it sells only (``inventory.erp_to_drp.only``): stock of
a raw material counted in metres used to be sent too, and the DRP refused every update of it
permanently (its units are sets, pieces and cartons), one dead letter per stock change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.registry import CONNECTORS
from contracts import topics
from contracts.envelope import Envelope
from flows.sync import inventory, inventory_flow
from flows.sync.config import load_config, parse_config
from hub.core.inbound import InboundRecord
from hub.core.processor import FlowContext, Item
from hub.store.models import SourceRecord
from hub.store.sync_models import Parked

ERP = CONNECTORS["erp"]


def material(no: str, mtart: str, meins: str) -> dict[str, Any]:
    return {"MATNR": no, "MAKTX": f"物料 {no}", "MTART": mtart, "MEINS": meins}


def stock(no: str, meins: str, on_hand: str = "80.000") -> Item:
    mard = {
        "MATNR": no, "WERKS": "1000", "LGORT": "1001", "LABST": on_hand, "INSME": "0.000",
        "SPEME": "0.000", "UMLME": "0.000", "BDMNG": "0.000", "MEINS": meins,
        "LAEDA": "20261124", "UZEIT": "093000",
    }  # fmt: skip
    env = ERP.to_envelope("stock", mard, source_version=1)
    rec = InboundRecord(topics.changes(env.entity), 0, 1, env.to_bytes(), env.key.encode())
    return Item(rec, env, None)


async def known(sessions: async_sessionmaker[AsyncSession], env: Envelope) -> None:
    """What the records flow keeps of the ERP's material record."""
    async with sessions() as s, s.begin():
        s.add(
            SourceRecord(
                entity=env.entity.value,
                source_system=env.source_system,
                source_id=env.source_id,
                source_version=env.source_version,
                op=env.op.value,
                payload=dict(env.body),
                last_message_id=str(env.message_id),
                updated_at=datetime.now(UTC),
            )
        )


async def to_drp(sessions: async_sessionmaker[AsyncSession], items: list[Item]) -> list[str]:
    spec = inventory_flow.spec(load_config())
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=inventory_flow.NAME)
        await spec.handle(ctx, items)
    return [
        Envelope.from_bytes(row["value"]).body["material"]  # type: ignore[arg-type]
        for row in ctx.outbox
        if row["topic"] == topics.outbound("drp")
    ]


async def test_drp_gets_stock_of_products_only(sessions: Any) -> None:
    await known(
        sessions,
        ERP.to_envelope("material", material("4000000001", "FERT", "SET"), source_version=1),
    )
    await known(
        sessions, ERP.to_envelope("material", material("1000000007", "ROH", "M"), source_version=1)
    )
    await known(
        sessions,
        ERP.to_envelope("material", material("5000000002", "ERSA", "ST"), source_version=1),
    )
    batch = [stock("4000000001", "SET"), stock("1000000007", "M"), stock("5000000002", "ST")]
    # the shaver (finished) and its spare head go to the DRP; the cable in metres does not
    assert await to_drp(sessions, batch) == ["4000000001", "5000000002"]


async def parked(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, list[str]]]:
    async with sessions() as s:
        rows = await s.scalars(select(Parked).order_by(Parked.id))
        return [(r.key, list(r.waiting_on)) for r in rows]


async def release(
    sessions: async_sessionmaker[AsyncSession], now: datetime, conf: Any = None
) -> list[tuple[str, str]]:
    """One unparker pass over parked stock: (material, stock on hand) of what the DRP got."""
    router = inventory_flow.InventoryRouter(conf or load_config())
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow="sync.unpark")
        await router.release(ctx, 100, now)
    return [
        (body["material"], body["on_hand"])
        for row in ctx.outbox
        if row["topic"] == topics.outbound("drp")
        for body in [Envelope.from_bytes(row["value"]).body]  # type: ignore[arg-type]
    ]


async def test_stock_that_comes_before_its_material_waits_for_it(sessions: Any) -> None:
    """A material master and its first stock posting travel on two topics: the stock of a
    cable in metres arriving first used to be sent, and the DRP refused it for ever."""
    first, second = stock("1000000007", "M", on_hand="80.000"), stock("1000000007", "M", "95.000")
    shaver = stock("4000000001", "SET")
    assert await to_drp(sessions, [first, shaver]) == []
    assert await to_drp(sessions, [second]) == []
    key = "erp:1000000007/1000/1001"
    assert await parked(sessions) == [
        (key, ["material:erp:1000000007"]),
        ("erp:4000000001/1000/1001", ["material:erp:4000000001"]),
        (key, [f"inventory:{key} (an earlier version is parked)"]),
    ]
    now = datetime.now(UTC)
    assert await release(sessions, now) == []  # nothing arrived: all still parked
    assert len(await parked(sessions)) == 3
    await known(
        sessions, ERP.to_envelope("material", material("1000000007", "ROH", "M"), source_version=1)
    )
    await known(
        sessions,
        ERP.to_envelope("material", material("4000000001", "FERT", "SET"), source_version=1),
    )
    # both postings of the cable released and not sent (a raw material); the shaver sent
    assert await release(sessions, now) == [("4000000001", "80.000")]
    assert await parked(sessions) == []


async def test_stock_waits_for_its_material_only_so_long(sessions: Any) -> None:
    assert await to_drp(sessions, [stock("4000000099", "SET")]) == []
    arrived = datetime.now(UTC)
    assert await release(sessions, arrived + timedelta(seconds=590)) == []
    # the record never came: sent as stock of an unknown material (the DRP decides)
    assert await release(sessions, arrived + timedelta(seconds=601)) == [("4000000099", "80.000")]
    assert await parked(sessions) == []


async def test_without_a_wait_unknown_stock_goes_at_once(sessions: Any) -> None:
    conf = load_config().model_dump()
    conf["inventory"]["erp_to_drp"]["material_wait_s"] = 0
    spec = inventory_flow.spec(parse_config(conf))
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=inventory_flow.NAME)
        await spec.handle(ctx, [stock("4000000099", "SET")])
    assert [r["topic"] for r in ctx.outbox] == [topics.outbound("drp")]
    assert await parked(sessions) == []


async def test_without_a_filter_every_stock_goes(sessions: Any) -> None:
    await known(
        sessions, ERP.to_envelope("material", material("1000000007", "ROH", "M"), source_version=1)
    )
    conf = load_config().model_dump()
    conf["inventory"]["erp_to_drp"]["only"] = {}
    spec = inventory_flow.spec(parse_config(conf))
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=inventory_flow.NAME)
        await spec.handle(ctx, [stock("1000000007", "M")])
    assert [r["topic"] for r in ctx.outbox] == [topics.outbound("drp")]


def test_waits_for_material_rule() -> None:
    only = {"category": ("finished",)}
    t0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    later = t0 + timedelta(seconds=599)
    assert inventory.waits_for_material(None, only, 600, t0, later)
    assert not inventory.waits_for_material(None, only, 600, t0, t0 + timedelta(seconds=600))
    assert not inventory.waits_for_material({"category": "raw"}, only, 600, t0, later)
    assert not inventory.waits_for_material(None, {}, 600, t0, later)  # nothing to decide by
    assert not inventory.waits_for_material(None, only, 0, t0, t0)


def test_drp_sells_rule() -> None:
    only = {"category": ("finished", "spare")}
    assert inventory.drp_sells({"category": "finished"}, only)
    assert not inventory.drp_sells({"category": "raw"}, only)
    assert not inventory.drp_sells({}, only)
    assert inventory.drp_sells(None, only)
    assert inventory.drp_sells({"category": "raw"}, {})
