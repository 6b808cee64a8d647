"""hub.ingest.redrive: a rejected native record mapped again (pure, no store)."""

from __future__ import annotations

import itertools
import json

from connectors.crm.simulator import generate as crm_traffic
from hub.ingest.redrive import NativeOrigin, native_origin, remap


def crm_customer(n: int) -> dict[str, object]:
    return [r for e, r in itertools.islice(crm_traffic(11, 0.0), 400) if e == "customer"][n]


CRM = NativeOrigin("crm", "customer")


def test_a_patch_fixes_every_record_of_an_array_and_ids_are_stable() -> None:
    a, b = crm_customer(0), crm_customer(1)
    raw = json.dumps([dict(a, create_time="bad"), dict(b, create_time="bad")]).encode()
    unfixed = remap(CRM, raw, None, id_base="dl-1")
    assert unfixed.envelopes == [] and unfixed.error is not None
    assert "create_time" in unfixed.error and "#0" in unfixed.error
    fix = {"create_time": a["create_time"]}
    first = remap(CRM, raw, fix, id_base="dl-1")
    again = remap(CRM, raw, fix, id_base="dl-1")
    other = remap(CRM, raw, fix, id_base="dl-2")
    assert first.error is None
    assert [e.source_id for e in first.envelopes] == [a["cust_no"], b["cust_no"]]
    ids = [e.message_id for e in first.envelopes]
    assert ids == [e.message_id for e in again.envelopes], "same dead letter, same ids"
    assert not set(ids) & {e.message_id for e in other.envelopes}
    assert json.loads(first.value)[1]["create_time"] == a["create_time"]


def test_charset_truncation_and_unknown_systems() -> None:
    rec = crm_customer(0)
    gbk = json.dumps(rec, ensure_ascii=False).encode("gbk")
    assert remap(NativeOrigin("crm", "customer", "gbk"), gbk, None, id_base="x").error is None
    assert "not utf-8" in (remap(CRM, gbk, None, id_base="x").error or "")
    cut = remap(NativeOrigin("crm", "customer", truncated=True), gbk, None, id_base="x")
    assert cut.error is not None and "oversize" in cut.error
    assert "no connector" in (remap(NativeOrigin("sap", "x"), b"{}", None, id_base="x").error or "")
    assert native_origin([("eai.source_system", b"crm")]) is None
    found = native_origin([("eai.native.system", b"crm"), ("eai.native.entity", b"customer")])
    assert found == CRM
