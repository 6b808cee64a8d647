"""OA native records: approval forms (审批单), decisions (审批意见), the reminders inbox
(催办), customer status-upgrade workflows and contracts awaiting approval.

OA numbers its own processes (SP/SJ/HT + date + sequence). A request that came from another
system keeps that system's number in ``ext_ref`` (来源单号) and its name in ``ext_system``;
decisions and reminders point at a process by either. Timestamps are ``2026-11-24 09:30``.
"""

from __future__ import annotations

from connectors.common.native import (
    S2,
    S4,
    S10,
    S20,
    S40,
    S120,
    S200,
    S500,
    AmountStr,
    Code,
    DateStr,
    DateTimeStr,
    NativeModel,
)


class OaRequestBase(NativeModel):
    """The header every OA workflow form shares."""

    flow_id: S20 | None = None  # 流程编号, assigned by OA
    applicant: S20  # 申请人
    applicant_dept: S40 | None = None
    approver: S20  # 当前审批人
    approver_dept: S40 | None = None
    approver_chain: S200 | None = None  # 审批链 "张经理>刘副总>黄总"
    superior: S20 | None = None  # 审批人上级 (last rung of the urge ladder)
    submit_time: DateTimeStr
    deadline: DateTimeStr | None = None  # 办理时限
    relation: Code | None = None  # 关系强度: 1 弱, 2 一般, 3 强
    ext_system: S10 | None = None  # 来源系统
    ext_ref: S40 | None = None  # 来源单号
    status: Code = "1"  # 1 审批中, 2 已通过, 3 已驳回, 4 已撤回


class OaApproval(OaRequestBase):
    """A general approval form: complaints, expenses, requisitions, renewals, ECOs ..."""

    canonical_types = (
        "purchase_requisition",
        "complaint",
        "expense",
        "credit_overrun",
        "replenishment",
        "maintenance_renewal",
        "engineering_change",
        "general",
    )

    flow_type: Code  # 流程类型
    title: S120
    amount: AmountStr | None = None
    currency: S4 = "CNY"
    biz_ref: S40 | None = None  # 关联单据


class OaStatusUpgrade(OaRequestBase):
    """客户状态升级: raising a CRM customer's status needs this approval."""

    canonical_types = ("customer_status_upgrade",)

    cust_no: S20
    cust_name: S120
    from_status: Code
    to_status: Code
    reason: S500 | None = None


class OaContract(OaRequestBase):
    """合同审批: a contract awaiting approval, flagged when it exceeds the credit limit."""

    canonical_types = ("contract",)

    contract_no: S20
    contract_name: S120
    nature: Code  # 合同性质: S 销售, V 服务, P 采购
    party_no: S20 | None = None  # counterparty's customer number
    party_name: S120
    amount: AmountStr
    currency: S4 = "CNY"
    sign_date: DateStr | None = None
    start_date: DateStr | None = None
    end_date: DateStr | None = None
    over_limit: S2 = "N"  # 超信用额度 Y/N


class OaDecision(NativeModel):
    """审批意见: the outcome of a workflow."""

    flow_id: S20 | None = None
    ext_ref: S40 | None = None
    result: Code  # 1 同意, 2 驳回, 3 撤回
    approver: S20
    approve_time: DateTimeStr
    opinion: S500 | None = None


class OaReminder(NativeModel):
    """A reminder (催办) in the approver's inbox."""

    remind_id: S40 | None = None
    flow_id: S20 | None = None
    ext_ref: S40 | None = None
    source: Code  # 发起系统: OA, ERP, PDM, CRM, DRP, HUB
    remind_level: S2
    channel: Code  # MAIL, IM, SMS, TEL, ESC
    to_user: S20
    content: S500
    seq: S4  # 第几次催办
    prev_remind_id: S40 | None = None
    due_time: DateTimeStr
    send_time: DateTimeStr | None = None
    escalate_to: S20 | None = None
