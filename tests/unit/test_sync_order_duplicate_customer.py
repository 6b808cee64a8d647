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
