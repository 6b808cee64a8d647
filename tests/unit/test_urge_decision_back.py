"""OA's decision goes back to the system that asked (``decisions_back_to`` in the urge
policy): the ERP gets the release or rejection of its purchase requisition, as the native
release record (EBAN_REL) its connector makes of it. A request from a system without a place
for decisions (the CRM) gets nothing back, and OA's own forms never echo."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from connectors.erp.connector import build as build_erp
from connectors.oa.connector import build as build_oa
from contracts.envelope import Entity, Envelope, Op
from hub.store.models import OutboxRow
from tests.unit.test_urge_scheduler import Feed, approval, at, decision_env, request_env

ERP_ID = "0010000123/00010"


async def outbound(sessions: Any, system: str) -> list[tuple[bytes, Envelope]]:
    async with sessions() as s:
        rows = (
            await s.execute(
                select(OutboxRow.key, OutboxRow.value)
                .where(OutboxRow.topic == f"outbound.{system}")
                .order_by(OutboxRow.id)
            )
        ).all()
    return [(bytes(k), Envelope.from_bytes(v)) for k, v in rows]


async def test_oa_decision_reaches_the_erp_as_its_release(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env(ERP_ID))
    decision = decision_env(ERP_ID, at(2026, 10, 12, 9), decision="rejected")
    await feed(decision)
    [(key, env)] = await outbound(sessions, "erp")
    assert key == f"erp:{ERP_ID}".encode()
    assert (env.entity, env.op, env.source_system) == (Entity.approval, Op.decide, "oa")
    assert env.causation_id == decision.message_id
    assert env.body["approval_id"] == ERP_ID and env.body["decision"] == "rejected"
    # what the ERP receives: release code R for item 00010 of requisition 0010000123
    _binding, native = build_erp().to_native(Entity.approval, env.body)
    assert (native.BANFN, native.BNFPO, native.REL_CODE, native.REL_BY) == (  # type: ignore[attr-defined]
        "0010000123", "00010", "R", "李总",
    )  # fmt: skip
    # the same decision again (a redelivery, an OA retry) changes nothing and sends nothing
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 9), decision="rejected"))
    assert len(await outbound(sessions, "erp")) == 1


async def test_a_decision_that_came_before_its_request_goes_back_too(sessions: Any) -> None:
    feed = Feed(sessions)
    early = decision_env(ERP_ID, at(2026, 10, 1, 9))
    await feed(early)
    assert await outbound(sessions, "erp") == []
    await feed(request_env(ERP_ID))
    [(key, env)] = await outbound(sessions, "erp")
    assert key == f"erp:{ERP_ID}".encode()
    assert env.body["decision"] == "approved" and env.op is Op.decide
    # derived from the decision, not from the message that carried it: the same id as had
    # the request come first, or had the decision come as a form status
    assert env.message_id == uuid.uuid5(
        uuid.UUID("0b6f5a52-6a1e-5c8e-9a55-2f1f6b7c0e11"), f"answer/erp:{ERP_ID}/open->approved"
    )


async def test_only_the_systems_the_policy_names_get_decisions(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env("HT-2026-001", system="crm"), request_env("SP-1", system="oa"))
    await feed(decision_env("HT-2026-001"), decision_env("SP-1"))
    assert await outbound(sessions, "crm") == []
    assert await outbound(sessions, "erp") == []
    # a decision the ERP itself made (released in the ERP) is not sent back to it
    await feed(request_env(ERP_ID))
    await feed(decision_env(ERP_ID, system="erp"))
    assert await outbound(sessions, "erp") == []


def form_status_env(decision: str, ts: dt.datetime) -> Envelope:
    """OA's copy of the ERP requisition, updated to show the decision (审批单 status)."""
    env = request_env(ERP_ID, system="oa", attributes={"oa.status": decision})
    return env.model_copy(update={"source_ts": ts})


async def releases(sessions: Any) -> list[tuple[str, str]]:
    """What the ERP was sent: (release code, released by) per message, in order."""
    out = []
    for _key, env in await outbound(sessions, "erp"):
        _binding, native = build_erp().to_native(Entity.approval, env.body)
        out.append((native.REL_CODE, native.REL_BY))  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize("form_first", [True, False])
async def test_one_release_whatever_comes_first_form_status_or_decision(
    sessions: Any, form_first: bool
) -> None:
    # The form update is stamped 10:00, OA's decision message 09:00 (the same decision,
    # taken at 09:00): whichever the hub processes first, the ERP gets one release.
    feed = Feed(sessions)
    await feed(request_env(ERP_ID))
    form = form_status_env("approved", at(2026, 10, 12, 10))
    decision = decision_env(ERP_ID, at(2026, 10, 12, 9))
    for env in (form, decision) if form_first else (decision, form):
        await feed(env)
    assert await releases(sessions) == [("A", "李总")]
    # An OA retry of the decision (a new message id) and a later form update change nothing.
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 9)))
    await feed(form_status_env("approved", at(2026, 10, 12, 11)))
    assert await releases(sessions) == [("A", "李总")]


async def test_a_decision_only_seen_as_a_form_status_goes_back(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env(ERP_ID))
    await feed(form_status_env("rejected", at(2026, 10, 12, 10)))
    # REL_BY: the form's current approver, the person OA was waiting on.
    assert await releases(sessions) == [("R", "李总")]


async def test_a_later_different_decision_updates_the_release_an_older_one_does_not(
    sessions: Any,
) -> None:
    feed = Feed(sessions)
    await feed(request_env(ERP_ID))
    await feed(form_status_env("approved", at(2026, 10, 12, 10)))
    # older and different: the form showing "approved" at 10:00 is newer; it stands
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 8), decision="rejected"))
    assert await releases(sessions) == [("A", "李总")]
    # newer and different: the release is updated once
    await feed(decision_env(ERP_ID, at(2026, 10, 13, 9), decision="withdrawn"))
    await feed(decision_env(ERP_ID, at(2026, 10, 13, 9), decision="withdrawn"))
    assert await releases(sessions) == [("A", "李总"), ("W", "李总")]
    row = await approval(sessions, f"erp:{ERP_ID}")
    assert row.status == "withdrawn"


def oa_copy_env(*, status: str | None = None, names_source: bool = True) -> Envelope:
    """OA's form for the ERP requisition, as OA's connector reads it (来源系统 = ERP)."""
    attributes: dict[str, Any] = {"oa.flow_id": "SP202610120007"}
    if names_source:
        attributes["oa.ext_system"] = "erp"
    if status is not None:
        attributes["oa.status"] = status
    env = request_env(ERP_ID, system="oa", attributes=attributes)
    return env.model_copy(update={"source_ts": at(2026, 10, 12, 10)})


async def test_an_oa_form_seen_before_the_erp_request_is_answered_to_the_erp(
    sessions: Any,
) -> None:
    # OA's form reaches the hub first (a replay, or a clerk who typed the requisition into OA):
    # it names the ERP as its source, so the approval is the ERP's from the start.
    feed = Feed(sessions)
    await feed(oa_copy_env())
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 11), decision="rejected"))
    assert await releases(sessions) == [("R", "李总")]
    row = await approval(sessions, f"erp:{ERP_ID}")
    assert row.origin_system == "erp"
    # the ERP's own request arrives later: the same approval, nothing sent twice
    await feed(request_env(ERP_ID))
    assert await releases(sessions) == [("R", "李总")]
    # OA has the form (it told the hub of it): the request goes to that form, by its number
    [(key, forwarded)] = await outbound(sessions, "oa")
    assert key == f"erp:{ERP_ID}".encode()
    assert forwarded.body["attributes"]["oa.flow_id"] == "SP202610120007"
    _binding, native = build_oa().to_native(Entity.approval, forwarded.body)
    assert (native.flow_id, native.ext_ref) == ("SP202610120007", ERP_ID)  # type: ignore[attr-defined]


async def test_an_oa_form_decided_before_the_hub_saw_it_goes_back_at_once(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(oa_copy_env(status="approved"))
    assert await releases(sessions) == [("A", "李总")]
    await feed(request_env(ERP_ID))
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 9)))
    assert await releases(sessions) == [("A", "李总")]


async def test_an_erp_request_after_an_oa_form_without_source_takes_its_decision_back(
    sessions: Any,
) -> None:
    # A form typed into OA without 来源系统: the hub learns where the approval started from the
    # ERP's request, and sends the decision OA already holds.
    feed = Feed(sessions)
    await feed(oa_copy_env(status="approved", names_source=False))
    assert await releases(sessions) == []
    await feed(request_env(ERP_ID))
    assert await releases(sessions) == [("A", "李总")]
    await feed(decision_env(ERP_ID, at(2026, 10, 12, 9)))
    assert await releases(sessions) == [("A", "李总")]
