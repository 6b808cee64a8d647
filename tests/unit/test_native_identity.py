"""Raw native records: their ledger identity is their place in the log, or the dead letter a
re-driven copy comes from."""

from __future__ import annotations

import json

from hub.core.inbound import InboundRecord
from hub.ingest.native_flow import _decode

RAW = json.dumps({"cust_no": "C1"}).encode()


def test_the_same_record_read_twice_has_one_identity() -> None:
    a = _decode(InboundRecord("crm.customer.native", 0, 7, RAW))
    b = _decode(InboundRecord("crm.customer.native", 0, 7, RAW))
    c = _decode(InboundRecord("crm.customer.native", 0, 8, RAW))
    assert a.message_id == b.message_id != c.message_id


def test_two_redrives_of_one_dead_letter_share_an_identity() -> None:
    headers = (("eai.redrive.dead_letter_id", b"42"),)
    first = _decode(InboundRecord("crm.customer.native", 1, 100, RAW, headers=headers))
    second = _decode(InboundRecord("crm.customer.native", 2, 230, RAW, headers=headers))
    other = _decode(
        InboundRecord(
            "crm.customer.native", 2, 231, RAW, headers=(("eai.redrive.dead_letter_id", b"43"),)
        )
    )
    assert first.message_id == second.message_id != other.message_id
