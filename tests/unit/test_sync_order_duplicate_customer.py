"""An order quoting a customer card its clerk typed twice goes to the golden record's copy in
the target. The second card is linked under a duplicate key (and quarantined in its system);
routing used to look that key up in the target, found nothing there, and parked the order
for ever."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flows.sync.master_flow import duplicate_key
from flows.sync.orders import Ref
from flows.sync.routing import golden_customer, resolve
from hub.core.processor import FlowContext
from hub.delivery import xref


async def test_order_for_a_re_entered_card_routes_to_the_golden_record(sessions: Any) -> None:
    now = datetime.now(UTC)
    rows = [
        ("customer", "G-1", "crm", "KH000001"),  # the first card
        ("customer", duplicate_key("G-1", "crm", "KH000002"), "crm", "KH000002"),  # typed again
        ("customer", "G-1", "erp", "0000500001"),  # the hub created it in ERP
        ("material", "M-1", "erp", "3000000001"),
    ]
    async with sessions() as s, s.begin():
        await xref.upsert_many(
            s,
            [
                {"entity": e, "key": k, "system": sy, "local_id": lid, "updated_at": now}
                for e, k, sy, lid in rows
            ],
        )
        ctx = FlowContext(session=s, flow="test")
        refs = [Ref("customer", "crm", "KH000002"), Ref("material", "erp", "3000000001")]
        local = await resolve(ctx, refs, "erp")
        assert local == {refs[0]: "0000500001", refs[1]: "3000000001"}
        # the credit check sums the golden record's orders, whichever card they quote
        assert await golden_customer(ctx, "crm", "KH000002") == "G-1"


async def test_a_duplicate_a_filtered_subscriber_holds_is_still_cross_referenced(
    sessions: Any,
) -> None:
    """A dealer typed again in the DRP, whose golden record the DRP filter no longer wants
    (survivorship took the CRM's type): not quarantined there, but its orders must still
    resolve. Before, no cross-reference was written and its replenishments parked for ever."""
    from contracts.envelope import Entity, Envelope, Op
    from flows.sync.config import load_config
    from flows.sync.master_flow import MasterSyncFlow
    from hub.core.inbound import InboundRecord
    from hub.core.processor import Item

    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        await xref.upsert_many(
            s,
            [
                {
                    "entity": "customer",
                    "key": "G-1",
                    "system": "drp",
                    "local_id": "JXS-ZJ-0001",
                    "updated_at": now,
                }
            ],
        )
    env = Envelope(
        entity=Entity.customer,
        op=Op.merge,
        source_system="hub",
        source_id="G-1",
        trace=("drp",),
        body={
            "kind": "organization",
            "name": "温州市瓯海阀门经销部",
            "type": "customer",  # not a distributor any more: the DRP filter says no
            "golden_id": "G-1",
            "members": [
                {"source_system": "drp", "source_id": "JXS-ZJ-0001"},
                {"source_system": "drp", "source_id": "JXS-ZJ-0002"},
            ],
        },
    )
    rec = InboundRecord(topic="golden.customer", partition=0, offset=0, value=env.to_bytes())
    flow = MasterSyncFlow(load_config())
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow="sync.master")
        await flow.handle(ctx, [Item(rec, env, None)])
        key = await xref.key_for(s, "customer", "drp", "JXS-ZJ-0002")
        assert key == duplicate_key("G-1", "drp", "JXS-ZJ-0002")
        assert not [o for o in ctx.outbox if o["topic"] == "outbound.drp"], "filtered: not sent"
        # and an order quoting the second card resolves to the golden record's ERP copy
        await xref.upsert_many(
            s,
            [
                {
                    "entity": "customer",
                    "key": "G-1",
                    "system": "erp",
                    "local_id": "0000500009",
                    "updated_at": now,
                }
            ],
        )
        ref = Ref("customer", "drp", "JXS-ZJ-0002")
        assert await resolve(FlowContext(session=s, flow="test"), [ref], "erp") == {
            ref: "0000500009"
        }
