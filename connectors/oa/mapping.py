"""OA <-> canonical.

The canonical ``approval_id`` is the id in the system where the approval started: OA's own
process number for OA forms, the origin's number (``ext_ref``) for forms OA received from
another system through the hub. OA's numbers have a fixed shape (two letters and digits), which
is how the way back tells them apart.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from connectors.common.errors import reject
from connectors.common.maptools import get, put
from connectors.common.parse import (
    format_amount,
    format_date,
    format_datetime,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_int,
    require,
)
from connectors.common.valuemaps import ValueMaps
from connectors.oa.native import (
    OaApproval,
    OaContract,
    OaDecision,
    OaReminder,
    OaRequestBase,
    OaStatusUpgrade,
)
from contracts.approval import ApprovalDecision, ApprovalRequest, Urge
from contracts.common import Attributes
from contracts.customer import CustomerStatus

SYSTEM = "oa"
DT = "%Y-%m-%d %H:%M"
D = "%Y-%m-%d"
OA_ID = re.compile(r"^(SP|SJ|HT|CB)\d{8,14}$")


def _dt(value: str | None, field: str) -> datetime | None:
    return parse_datetime(value, field, (DT,)) if value else None


def approval_id_of(flow_id: str | None, ext_ref: str | None) -> str:
    if ext_ref:
        return ext_ref
    if flow_id:
        return flow_id
    raise reject("flow_id", "<missing>", "a form needs flow_id or ext_ref")


def ids_of(approval_id: str) -> tuple[str | None, str | None]:
    """(flow_id, ext_ref) for a canonical approval id."""
    return (approval_id, None) if OA_ID.match(approval_id) else (None, approval_id)


def _chain(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(part.strip() for part in value.split(">"))
    if not all(names):
        raise reject("approver_chain", value, "must be names separated by '>'")
    return names


# --------------------------------------------------------------------------- requests
def _request(
    n: OaRequestBase,
    vm: ValueMaps,
    *,
    type: str,
    title: str,
    amount: Decimal | None,
    currency: str,
    subject_ref: str | None,
    attrs: Attributes,
) -> ApprovalRequest:
    submitted = parse_datetime(n.submit_time, "submit_time", (DT,))
    deadline = _dt(n.deadline, "deadline")
    if deadline is not None and deadline < submitted:
        raise reject("deadline", n.deadline, f"must not be before submit_time {n.submit_time}")
    attrs["oa.status"] = vm.to_canonical("status", n.status, "status")
    if n.ext_system:
        attrs["oa.ext_system"] = vm.to_canonical("system", n.ext_system, "ext_system")
    if n.flow_id and n.ext_ref:
        attrs["oa.flow_id"] = n.flow_id
    return ApprovalRequest(
        approval_id=approval_id_of(n.flow_id, n.ext_ref),
        type=type,
        title=require(title, "title"),
        amount=amount,
        currency=currency,
        requester=require(n.applicant, "applicant"),
        requester_department=n.applicant_dept,
        approver=require(n.approver, "approver"),
        approver_department=n.approver_dept,
        approver_chain=_chain(n.approver_chain),
        superior=n.superior,
        submitted_at=submitted,
        deadline=deadline,
        tie=vm.to_canonical("relation", n.relation, "relation") if n.relation else "normal",
        subject_ref=subject_ref,
        attributes=attrs,
    )


def _base(a: ApprovalRequest, vm: ValueMaps) -> dict[str, Any]:
    attrs = a.attributes
    flow_id, ext_ref = ids_of(a.approval_id)
    if get(attrs, "oa.flow_id"):
        flow_id, ext_ref = get(attrs, "oa.flow_id"), a.approval_id
    status = get(attrs, "oa.status")
    ext_system = get(attrs, "oa.ext_system")
    return {
        "flow_id": flow_id,
        "ext_ref": ext_ref,
        "ext_system": vm.to_native("system", ext_system, "attributes.oa.ext_system")
        if ext_system
        else None,
        "applicant": a.requester,
        "applicant_dept": a.requester_department,
        "approver": a.approver,
        "approver_dept": a.approver_department,
        "approver_chain": ">".join(a.approver_chain) or None,
        "superior": a.superior,
        "submit_time": format_datetime(a.submitted_at, DT),
        "deadline": format_datetime(a.deadline, DT) if a.deadline else None,
        # A request from elsewhere carries the tie the hub's policy gave it.
        "relation": vm.to_native("relation", a.tie, "tie"),
        "status": vm.to_native("status", status, "attributes.oa.status") if status else "1",
    }


def approval_to_canonical(n: OaApproval, vm: ValueMaps) -> ApprovalRequest:
    attrs: Attributes = {}
    return _request(
        n,
        vm,
        type=vm.to_canonical("flow_type", n.flow_type, "flow_type"),
        title=n.title,
        amount=parse_amount(n.amount, "amount", places=2) if n.amount else None,
        currency=n.currency,
        subject_ref=n.biz_ref,
        attrs=attrs,
    )


def approval_from_canonical(a: ApprovalRequest, vm: ValueMaps) -> OaApproval:
    return OaApproval(
        **_base(a, vm),
        flow_type=vm.to_native("flow_type", a.type, "type"),
        title=a.title,
        amount=format_amount(a.amount) if a.amount is not None else None,
        currency=a.currency,
        biz_ref=a.subject_ref,
    )


def status_upgrade_to_canonical(n: OaStatusUpgrade, vm: ValueMaps) -> ApprovalRequest:
    before = CustomerStatus(vm.to_canonical("customer_status", n.from_status, "from_status"))
    after = CustomerStatus(vm.to_canonical("customer_status", n.to_status, "to_status"))
    if not before.is_upgrade_to(after):
        raise reject(
            "to_status",
            n.to_status,
            f"must be above from_status {n.from_status} ({before.value}): only upgrades need "
            "this approval",
        )
    attrs: Attributes = {
        "oa.cust_name": require(n.cust_name, "cust_name"),
        "oa.from_status": before.value,
        "oa.to_status": after.value,
    }
    put(attrs, "oa.reason", n.reason)
    return _request(
        n,
        vm,
        type="customer_status_upgrade",
        title=f"客户状态升级：{n.cust_name}（{before.value} → {after.value}）",
        amount=None,
        currency="CNY",
        subject_ref=require(n.cust_no, "cust_no"),
        attrs=attrs,
    )


def status_upgrade_from_canonical(a: ApprovalRequest, vm: ValueMaps) -> OaStatusUpgrade:
    attrs = a.attributes
    if not a.subject_ref:
        raise reject("subject_ref", None, "a status upgrade names the customer (cust_no)")
    return OaStatusUpgrade(
        **_base(a, vm),
        cust_no=a.subject_ref,
        cust_name=get(attrs, "oa.cust_name") or a.title,
        from_status=vm.to_native(
            "customer_status", attrs.get("oa.from_status"), "attributes.oa.from_status"
        ),
        to_status=vm.to_native(
            "customer_status", attrs.get("oa.to_status"), "attributes.oa.to_status"
        ),
        reason=get(attrs, "oa.reason"),
    )


def contract_to_canonical(n: OaContract, vm: ValueMaps) -> ApprovalRequest:
    attrs: Attributes = {
        "oa.contract_no": require(n.contract_no, "contract_no"),
        "oa.nature": vm.to_canonical("contract_nature", n.nature, "nature"),
        "oa.party_name": require(n.party_name, "party_name"),
        "oa.over_limit": parse_flag(n.over_limit, "over_limit"),
    }
    start = parse_date(n.start_date, "start_date", (D,)) if n.start_date else None
    end = parse_date(n.end_date, "end_date", (D,)) if n.end_date else None
    if start and end and end < start:
        raise reject("end_date", n.end_date, f"must not be before start_date {n.start_date}")
    for key, value in (
        ("oa.sign_date", parse_date(n.sign_date, "sign_date", (D,)) if n.sign_date else None),
        ("oa.start_date", start),
        ("oa.end_date", end),
    ):
        if value is not None:
            attrs[key] = value.isoformat()
    return _request(
        n,
        vm,
        type="contract",
        title=require(n.contract_name, "contract_name"),
        amount=parse_amount(n.amount, "amount", places=2),
        currency=n.currency,
        subject_ref=n.party_no,
        attrs=attrs,
    )


def contract_from_canonical(a: ApprovalRequest, vm: ValueMaps) -> OaContract:
    attrs = a.attributes

    def day(key: str) -> str | None:
        value = get(attrs, key)
        return format_date(parse_date(value, f"attributes.{key}"), D) if value else None

    if a.amount is None:
        raise reject("amount", None, "a contract approval needs the contract amount")
    return OaContract(
        **_base(a, vm),
        contract_no=get(attrs, "oa.contract_no") or a.approval_id,
        contract_name=a.title,
        nature=vm.to_native("contract_nature", attrs.get("oa.nature", "sales"), "nature"),
        party_no=a.subject_ref,
        party_name=get(attrs, "oa.party_name") or a.subject_ref or "",
        amount=format_amount(a.amount),
        currency=a.currency,
        sign_date=day("oa.sign_date"),
        start_date=day("oa.start_date"),
        end_date=day("oa.end_date"),
        over_limit="Y" if attrs.get("oa.over_limit") else "N",
    )


# --------------------------------------------------------------------------- decisions
def decision_to_canonical(n: OaDecision, vm: ValueMaps) -> ApprovalDecision:
    return ApprovalDecision(
        approval_id=approval_id_of(n.flow_id, n.ext_ref),
        decision=vm.to_canonical("result", n.result, "result"),
        decided_by=require(n.approver, "approver"),
        decided_at=parse_datetime(n.approve_time, "approve_time", (DT,)),
        comment=n.opinion,
    )


def decision_from_canonical(d: ApprovalDecision, vm: ValueMaps) -> OaDecision:
    flow_id, ext_ref = ids_of(d.approval_id)
    return OaDecision(
        flow_id=flow_id,
        ext_ref=ext_ref,
        result=vm.to_native("result", d.decision, "decision"),
        approver=d.decided_by,
        approve_time=format_datetime(d.decided_at, DT),
        opinion=d.comment,
    )


# --------------------------------------------------------------------------- reminders
def reminder_to_canonical(n: OaReminder, vm: ValueMaps) -> Urge:
    return Urge(
        urge_id=require(n.remind_id, "remind_id"),
        approval_id=approval_id_of(n.flow_id, n.ext_ref),
        origin_system=vm.to_canonical("system", n.source, "source"),
        level=parse_int(n.remind_level, "remind_level", minimum=1),
        channel=vm.to_canonical("channel", n.channel, "channel"),
        recipient=require(n.to_user, "to_user"),
        text=require(n.content, "content"),
        sequence=parse_int(n.seq, "seq", minimum=1),
        previous_urge_id=n.prev_remind_id,
        due_at=parse_datetime(n.due_time, "due_time", (DT,)),
        sent_at=_dt(n.send_time, "send_time"),
        escalated_to=n.escalate_to,
    )


def reminder_from_canonical(u: Urge, vm: ValueMaps) -> OaReminder:
    flow_id, ext_ref = ids_of(u.approval_id)
    return OaReminder(
        remind_id=u.urge_id,
        flow_id=flow_id,
        ext_ref=ext_ref,
        source=vm.to_native("system", u.origin_system, "origin_system"),
        remind_level=str(u.level),
        channel=vm.to_native("channel", u.channel, "channel"),
        to_user=u.recipient,
        content=u.text,
        seq=str(u.sequence),
        prev_remind_id=u.previous_urge_id,
        due_time=format_datetime(u.due_at, DT),
        send_time=format_datetime(u.sent_at, DT) if u.sent_at else None,
        escalate_to=u.escalated_to,
    )
